#pragma once

// -- Names a client chooses
// ------------------------------------------------------
//
// Every uid, device, group, connection id and message id that reaches the node
// from outside (frames, the HTTP API, JWT claims, peers) is checked here, once
// and by the same rule, before it is used as a key.

#include <string_view>

namespace wsc {

/// Checks a uid, device, group or id: well-formed UTF-8 of 1-128 bytes, no
/// control characters, no whitespace, no comma.
bool valid_name(std::string_view name);

/// Whether `text` is well-formed UTF-8 (no overlong forms, no surrogates,
/// nothing above U+10FFFF).
bool valid_utf8(std::string_view text);

} // namespace wsc
