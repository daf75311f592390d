#pragma once

#include <caf/expected.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsc {

/// The claims of a verified token that a node uses.
struct jwt_claims {
  std::string sub;
  int64_t exp = 0;
  std::vector<std::string> groups;
};

/// Verifies an HS256 JSON Web Token: the header must name HS256 (anything
/// else, `none` included, is refused), the signature is compared in constant
/// time, `exp` is required and `nbf` honoured against `now_s` (seconds since
/// the epoch), `sub` must be a valid uid and `groups`, when present, a list of
/// valid group names. The error's text is a short reason fit for a 401.
caf::expected<jwt_claims> verify_jwt(std::string_view token,
                                     std::string_view secret, int64_t now_s);

/// Signs `payload_json` as an HS256 token (for tests and tools).
std::string sign_jwt(std::string_view payload_json, std::string_view secret);

} // namespace wsc
