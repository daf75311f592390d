#pragma once

// -- Whether a text is one JSON value, without parsing it (no CAF) ------------

#include <cstddef>
#include <string_view>

namespace wsc {

/// Whether `text` is exactly one JSON value (RFC 8259; whitespace around it
/// allowed) nesting arrays and objects at most `max_depth` deep, with no
/// number beyond a double's range (as nlohmann's parser). A syntax
/// check in one pass that allocates nothing, for payloads copied into
/// frames as they are: nlohmann's `accept` costs ~450 ns for a 60-byte
/// object, most of it setting up its lexer. Bytes >= 0x80 in strings are
/// not checked here (UTF-8 is `valid_utf8`'s job).
bool json_value_ok(std::string_view text, size_t max_depth);

} // namespace wsc
