#pragma once

// -- What the kernel may hold for a client socket -----------------------------

#include "net/beast.hpp"

#include <cstdint>

namespace wsc::net {

/// Caps the kernel's send buffer of a client socket at `bytes` (0: leaves
/// it to autotuning, which lets a socket hold up to 4 MB for a client that
/// does not read, outside every budget of the node: helper-44's probe).
void limit_send_buffer(tcp::socket& socket, uint64_t bytes);

/// Before a client socket closes: the bytes its peer never took must not
/// outlive it (a closed socket keeps them for as long as the peer stays
/// without reading: helper-44's probe parked 554 MB in 200 sockets the
/// node had closed). A peer that `reads` (it took our last answer, e.g.
/// the closing handshake is done) gets a second without progress; any
/// other gets a reset, which frees them at once.
void drop_unsent_bytes(tcp::socket& socket, bool reads);

} // namespace wsc::net
