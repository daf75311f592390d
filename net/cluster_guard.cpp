#include "net/cluster_guard.hpp"

#include "loop/write_through_scribe.hpp"
#include "util/log.hpp"

#include <caf/io/basp/header.hpp>
#include <caf/io/basp/message_type.hpp>

#include <atomic>
#include <cstdint>

namespace wsc::net {

namespace {

namespace basp = caf::io::basp;

/// A scribe that refuses oversized or premature BASP payloads (and writes
/// when flushed).
class guarded_scribe final : public write_through_scribe {
public:
  using write_through_scribe::write_through_scribe;

  bool consume(caf::execution_unit* ctx, const void* buf,
               size_t num_bytes) override {
    // The first header read tells whether the peer starts with a handshake
    // (the operation is its first byte).
    if (!header_seen_ && num_bytes == basp::header_size) {
      header_seen_ = true;
      auto op =
          static_cast<basp::message_type>(*static_cast<const uint8_t*>(buf));
      starts_with_handshake_ = op == basp::message_type::server_handshake ||
                               op == basp::message_type::client_handshake;
    }
    return write_through_scribe::consume(ctx, buf, num_bytes);
  }

  void configure_read(caf::io::receive_policy::config config) override {
    auto size = config.second;
    if (size != basp::header_size) { // a payload
      auto limit = payloads_ > 0            ? max_basp_payload
                   : starts_with_handshake_ ? max_handshake_payload
                                            : size_t{0};
      ++payloads_;
      if (size > limit) {
        refused();
        config = caf::io::receive_policy::exactly(1);
      }
    }
    write_through_scribe::configure_read(config);
  }

private:
  static void refused() {
    static std::atomic<uint64_t> count{0};
    if (count++ % 1000 == 0)
      log::warn("cluster port: refused a BASP message whose size or place "
                "is not a peer's ({} so far); connection closed",
                count.load());
  }

  bool header_seen_ = false;
  bool starts_with_handshake_ = false;
  uint64_t payloads_ = 0;
};

} // namespace

guarded_multiplexer::guarded_multiplexer(caf::actor_system* sys)
    : loop_multiplexer(sys) {
  // nop
}

caf::io::scribe_ptr
guarded_multiplexer::new_scribe(caf::io::network::native_socket fd) {
  caf::io::network::keepalive(fd, true);
  return caf::make_counted<guarded_scribe>(*this, fd);
}

} // namespace wsc::net
