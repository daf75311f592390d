#pragma once

// -- What the kernel may hold for a client socket -----------------------------

#include "net/beast.hpp"

#include <chrono>
#include <cstdint>

namespace wsc::net {

/// Caps the kernel's send buffer of a client socket at `bytes` (0: leaves
/// it to autotuning, which lets a socket hold up to 4 MB for a client that
/// does not read, outside every budget of the node: helper-44's probe).
void limit_send_buffer(tcp::socket& socket, uint64_t bytes);

/// Before a client socket closes: the bytes its peer never took must not
/// outlive it (a closed socket keeps them for as long as the peer stays
/// without reading: helper-44's probe parked 554 MB in 200 sockets the
/// node had closed). `grace` 0: a reset, which frees them at once (a peer
/// that did not read); else they may take that long without progress
/// (`TCP_USER_TIMEOUT`; a peer that is reading our last answer).
void drop_unsent_bytes(tcp::socket& socket, std::chrono::milliseconds grace);

/// Whether the kernel holds bytes for the socket that its peer did not take
/// yet.
bool holds_unsent_bytes(tcp::socket& socket);

/// Whether closing the socket resets it (`SO_LINGER` 0), for the closes
/// that are not ours to time: Beast's stream closes a socket itself when a
/// deadline passes, before its handler runs.
void reset_on_close(tcp::socket& socket, bool reset);

} // namespace wsc::net
