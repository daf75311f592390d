#include "middleware/jwt.hpp"

#include "middleware/middleware.hpp"
#include "util/hmac.hpp"

#include <caf/sec.hpp>

#include <nlohmann/json.hpp>

#include <array>

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

} // namespace

caf::expected<jwt_claims> verify_jwt(std::string_view token,
                                     std::string_view secret, int64_t now_s) {
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
  auto header = nlohmann::json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return reject("malformed token");
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || *alg != "HS256")
    return reject("algorithm not accepted");
  auto expected = hmac_sha256(secret, token.substr(0, dot2));
  if (!equal_constant_time(signature, expected))
    return reject("bad signature");
  auto payload = nlohmann::json::parse(payload_text, nullptr, false);
  if (payload.is_discarded() || !payload.is_object())
    return reject("malformed token");
  jwt_claims claims;
  auto exp = payload.find("exp");
  if (exp == payload.end() || !exp->is_number_integer())
    return reject("token has no valid exp");
  claims.exp = exp->get<int64_t>();
  if (claims.exp <= now_s)
    return reject("token expired");
  if (auto nbf = payload.find("nbf"); nbf != payload.end()) {
    if (!nbf->is_number_integer())
      return reject("malformed nbf");
    if (nbf->get<int64_t>() > now_s)
      return reject("token not yet valid");
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

std::string sign_jwt(std::string_view payload_json, std::string_view secret) {
  auto signing_input = b64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." +
                       b64url_encode(payload_json);
  return signing_input + "." +
         b64url_encode(hmac_sha256(secret, signing_input));
}

} // namespace wsc
