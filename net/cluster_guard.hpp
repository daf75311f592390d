#pragma once

// -- Bounds on what a stranger can make the cluster port allocate -----------
//
// CAF 0.17 reads a 32-byte BASP header and then allocates the payload it
// announces (up to 4 GiB) before any handshake: a few bytes of garbage on
// `cluster-listen` make a node allocate gigabytes. This network backend is
// CAF's own, with connections that accept as first message only a handshake
// of at most `max_handshake_payload` bytes and later messages of at most
// `max_basp_payload`. A read beyond is cut to one byte, which BASP reports
// as a malformed message: it closes the connection.

#include "loop/loop_multiplexer.hpp"

#include <cstddef>

namespace wsc::net {

/// The largest payload of a connection's first BASP message (a handshake:
/// node id, app identifiers and the published REGISTRY's interface).
constexpr size_t max_handshake_payload = 64 * 1024;

/// The largest payload of any later BASP message: a delivery batch is cut at
/// a few MiB (see the REGISTRY), a single delivery is at most
/// `max-message-bytes` (64 MiB at most) plus its envelope.
constexpr size_t max_basp_payload = 80u << 20;

/// CAF's default network backend with bounded BASP reads (see above), run on
/// an event loop with `scheduler-policy=loop` (loop_multiplexer). Load it as
/// `load<caf::io::middleman, guarded_multiplexer>()`.
class guarded_multiplexer : public loop_multiplexer {
public:
  explicit guarded_multiplexer(caf::actor_system* sys);

  caf::io::scribe_ptr new_scribe(caf::io::network::native_socket fd) override;
};

} // namespace wsc::net
