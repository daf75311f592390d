#include "loop/write_through_scribe.hpp"

#include <sys/socket.h>
#include <sys/types.h>

namespace wsc {

write_through_scribe::write_through_scribe(
    caf::io::network::default_multiplexer& mpx,
    caf::io::network::native_socket fd)
    : scribe_impl(mpx, fd) {
  stream_.ack_writes(true);
}

void write_through_scribe::flush() {
  auto& pending = wr_buf();
  if (!pending.empty() && !stream_writing_ && !broker_acks_) {
    auto sent =
        ::send(stream_.fd(), pending.data(), pending.size(), MSG_NOSIGNAL);
    if (sent > 0)
      pending.erase(pending.begin(), pending.begin() + sent);
  }
  if (!pending.empty()) {
    stream_writing_ = true;
    scribe_impl::flush();
  }
}

void write_through_scribe::ack_writes(bool enable) {
  broker_acks_ = enable;
}

void write_through_scribe::data_transferred(caf::execution_unit* ctx,
                                            size_t written, size_t remaining) {
  if (remaining == 0)
    stream_writing_ = false;
  if (broker_acks_)
    scribe_impl::data_transferred(ctx, written, remaining);
}

} // namespace wsc
