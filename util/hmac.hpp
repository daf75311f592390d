#pragma once

#include <string>
#include <string_view>

namespace wsc {

/// HMAC-SHA256 of `data` under `key` (32 raw bytes), by OpenSSL.
std::string hmac_sha256(std::string_view key, std::string_view data);

/// Compares two byte strings in time independent of where they differ.
bool equal_constant_time(std::string_view x, std::string_view y);

} // namespace wsc
