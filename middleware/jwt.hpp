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

/// What a deployment requires of a token beyond the signature and times
/// (`jwt-audience`, `jwt-issuer`); an empty string is not checked.
struct jwt_requirements {
  /// Must be the `aud` claim, or one of its strings when it is an array
  /// (RFC 7519, 4.1.3).
  std::string audience;
  /// Must be the `iss` claim.
  std::string issuer;
};

/// The latest NumericDate a token may carry in `exp` or `nbf`:
/// 9999-12-31T23:59:59Z. Bounds every time computed from a token (`exp *
/// 1000` and more stay far from int64 overflow).
constexpr int64_t jwt_max_time_s = 253'402'300'799;

/// Verifies an HS256 JSON Web Token: the header must name HS256 (anything
/// else, `none` included, is refused), the signature is compared in constant
/// time, `exp` is required and `nbf` honoured against `now_s` (seconds since
/// the epoch), both integers within +-`jwt_max_time_s`, `sub` must be a valid
/// uid and `groups`, when present, a list of valid group names; `aud` and
/// `iss` as `req` says. A key repeated in any object of the header or the
/// payload refuses the token (no "last one wins"). The error's text is a
/// short reason fit for a 401.
caf::expected<jwt_claims> verify_jwt(std::string_view token,
                                     std::string_view secret, int64_t now_s,
                                     const jwt_requirements& req = {});

/// Base64url without padding (RFC 7515's encoding of JWT parts).
std::string b64url_encode(std::string_view in);

/// Signs `payload_json` as an HS256 token (for tests and tools).
std::string sign_jwt(std::string_view payload_json, std::string_view secret);

} // namespace wsc
