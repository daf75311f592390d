#include "middleware/jwt.hpp"

#include "middleware/middleware.hpp"
#include "util/hmac.hpp"

#include <caf/sec.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <optional>
#include <set>
#include <vector>

// cpp-jwt (libcpp-jwt-dev) compares HMAC signatures with operator== (see its
// impl/algorithm.ipp), which leaks timing; the few lines here use OpenSSL's
// HMAC and CRYPTO_memcmp instead.

namespace wsc {

namespace {

caf::error reject(const char* reason) {
  return caf::make_error(caf::sec::invalid_argument, std::string{reason});
}

constexpr char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

bool b64url_decode(std::string_view in, std::string& out) {
  std::array<int, 256> map;
  map.fill(-1);
  for (int i = 0; i < 64; ++i)
    map[static_cast<unsigned char>(b64url_alphabet[i])] = i;
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    auto v = map[static_cast<unsigned char>(ch)];
    if (v < 0)
      return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return bits < 6; // a single trailing sextet is not valid base64
}

/// Parses a JSON part of a token (discarded when it is not JSON) and tells
/// whether any object in it, at any depth, repeats a key: RFC 7515 4 and
/// RFC 7519 4 allow "last one wins", but two readers of the same token may
/// then see different claims, so such a token is refused.
nlohmann::json parse_unique_keys(const std::string& text, bool& repeated) {
  using json = nlohmann::json;
  std::vector<std::set<std::string>> keys; // one set per open object
  repeated = false;
  json::parser_callback_t callback = [&](int, json::parse_event_t event,
                                         json& parsed) {
    switch (event) {
    case json::parse_event_t::object_start:
      keys.emplace_back();
      break;
    case json::parse_event_t::object_end:
      if (!keys.empty())
        keys.pop_back();
      break;
    case json::parse_event_t::key:
      if (!keys.empty() && parsed.is_string()) {
        if (!keys.back().insert(parsed.get_ref<const std::string&>()).second)
          repeated = true;
      }
      break;
    default:
      break;
    }
    return true;
  };
  return json::parse(text, callback, false);
}

/// Reads a NumericDate: an integer within +-jwt_max_time_s (a float, or an
/// unsigned beyond int64, never reaches a cast).
std::optional<int64_t> numeric_date(const nlohmann::json& x) {
  if (x.is_number_unsigned()) {
    auto value = x.get<uint64_t>();
    if (value > static_cast<uint64_t>(jwt_max_time_s))
      return std::nullopt;
    return static_cast<int64_t>(value);
  }
  if (!x.is_number_integer())
    return std::nullopt;
  auto value = x.get<int64_t>();
  if (value > jwt_max_time_s || value < -jwt_max_time_s)
    return std::nullopt;
  return value;
}

/// True when the `aud` claim names `audience`: the string itself, or an
/// array of strings that contains it. Anything else in `aud` refuses.
bool audience_matches(const nlohmann::json& aud, const std::string& audience) {
  if (aud.is_string())
    return aud.get_ref<const std::string&>() == audience;
  if (!aud.is_array())
    return false;
  bool found = false;
  for (auto& x : aud) {
    if (!x.is_string())
      return false;
    found |= x.get_ref<const std::string&>() == audience;
  }
  return found;
}

} // namespace

caf::expected<jwt_claims> verify_jwt(std::string_view token,
                                     std::string_view secret, int64_t now_s,
                                     const jwt_requirements& req) {
  if (token.empty())
    return reject("missing token");
  if (token.size() > 8192)
    return reject("malformed token");
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos ||
      token.find('.', dot2 + 1) != std::string_view::npos)
    return reject("malformed token");
  std::string header_text;
  std::string payload_text;
  std::string signature;
  if (!b64url_decode(token.substr(0, dot1), header_text) ||
      !b64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload_text) ||
      !b64url_decode(token.substr(dot2 + 1), signature))
    return reject("malformed token");
  bool repeated = false;
  auto header = parse_unique_keys(header_text, repeated);
  if (header.is_discarded() || !header.is_object())
    return reject("malformed token");
  if (repeated)
    return reject("repeated key in token");
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || *alg != "HS256")
    return reject("algorithm not accepted");
  auto expected = hmac_sha256(secret, token.substr(0, dot2));
  if (!equal_constant_time(signature, expected))
    return reject("bad signature");
  auto payload = parse_unique_keys(payload_text, repeated);
  if (payload.is_discarded() || !payload.is_object())
    return reject("malformed token");
  if (repeated)
    return reject("repeated key in token");
  jwt_claims claims;
  auto exp = payload.find("exp");
  if (exp == payload.end() || !exp->is_number_integer())
    return reject("token has no valid exp");
  auto exp_s = numeric_date(*exp);
  if (!exp_s)
    return reject("exp out of range");
  claims.exp = *exp_s;
  if (claims.exp <= now_s)
    return reject("token expired");
  if (auto nbf = payload.find("nbf"); nbf != payload.end()) {
    if (!nbf->is_number_integer())
      return reject("malformed nbf");
    auto nbf_s = numeric_date(*nbf);
    if (!nbf_s)
      return reject("nbf out of range");
    if (*nbf_s > now_s)
      return reject("token not yet valid");
  }
  if (!req.issuer.empty()) {
    auto iss = payload.find("iss");
    if (iss == payload.end() || !iss->is_string() ||
        iss->get_ref<const std::string&>() != req.issuer)
      return reject("issuer not accepted");
  }
  if (!req.audience.empty()) {
    auto aud = payload.find("aud");
    if (aud == payload.end() || !audience_matches(*aud, req.audience))
      return reject("audience not accepted");
  }
  auto sub = payload.find("sub");
  if (sub == payload.end() || !sub->is_string() ||
      !valid_name(sub->get_ref<const std::string&>()))
    return reject("token has no valid sub");
  claims.sub = sub->get<std::string>();
  if (auto groups = payload.find("groups"); groups != payload.end()) {
    if (!groups->is_array())
      return reject("groups must be a list");
    for (auto& g : *groups) {
      if (!g.is_string() || !valid_name(g.get_ref<const std::string&>()))
        return reject("groups must be a list of valid names");
      claims.groups.push_back(g.get<std::string>());
    }
  }
  return claims;
}

std::string b64url_encode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += b64url_alphabet[(acc >> bits) & 0x3F];
    }
  }
  if (bits > 0)
    out += b64url_alphabet[(acc << (6 - bits)) & 0x3F];
  return out;
}

std::string sign_jwt(std::string_view payload_json, std::string_view secret) {
  auto signing_input = b64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." +
                       b64url_encode(payload_json);
  return signing_input + "." +
         b64url_encode(hmac_sha256(secret, signing_input));
}

} // namespace wsc
