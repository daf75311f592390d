// libFuzzer target: wsc::verify_jwt.
//
// The first byte picks the mode:
//  - bit 0 clear: the rest is a token as it arrives in `token=` / `Bearer`;
//  - bit 0 set:   the rest is "header\0payload" JSON, signed here with the
//    right secret, so that the claim checks behind the signature (exp, nbf,
//    sub, groups, aud, iss, repeated keys) are reached too;
//  - bit 1: `jwt-audience` is "fuzz-aud"; bit 2: `jwt-issuer` is "fuzz-iss".
// Invariants: an accepted token has a valid sub, now < exp <= year 9999 and
// valid group names; with an audience or issuer required, the payload names
// it; nothing crashes, leaks or hits undefined behaviour on the way (a raw
// token cannot be forged by the fuzzer: HMAC).

#include "middleware/jwt.hpp"
#include "middleware/middleware.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view secret = "fuzz-secret";
constexpr int64_t now = 1'700'000'000;

std::string b64url(std::string_view in) {
  return wsc::b64url_encode(in);
}

std::string sign(std::string_view header, std::string_view payload) {
  auto input = b64url(header) + "." + b64url(payload);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(),
       digest, &len);
  return input + "." +
         b64url(std::string_view(reinterpret_cast<char*>(digest), len));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string token;
  std::string header;
  if (data[0] & 1) {
    auto nul = rest.find('\0');
    header = nul == std::string_view::npos ? std::string{R"({"alg":"HS256"})"}
                                           : std::string{rest.substr(0, nul)};
    auto payload = nul == std::string_view::npos ? rest : rest.substr(nul + 1);
    token = sign(header, payload);
  } else {
    token = std::string{rest};
  }
  wsc::jwt_requirements req;
  if (data[0] & 2)
    req.audience = "fuzz-aud";
  if (data[0] & 4)
    req.issuer = "fuzz-iss";
  auto claims = wsc::verify_jwt(token, secret, now, req);
  if (!claims)
    return 0;
  if (!wsc::valid_name(claims->sub) || claims->exp <= now ||
      claims->exp > wsc::jwt_max_time_s)
    std::abort();
  for (auto& g : claims->groups)
    if (!wsc::valid_name(g))
      std::abort();
  if ((data[0] & 1) && (data[0] & 6)) {
    // Accepted, so the payload is an object without repeated keys: the plain
    // parser reads the same claims.
    auto nul = rest.find('\0');
    auto payload = nlohmann::json::parse(
        nul == std::string_view::npos ? rest : rest.substr(nul + 1), nullptr,
        false);
    if (!payload.is_object())
      std::abort();
    if (!req.issuer.empty() &&
        payload.value("iss", nlohmann::json{}) != req.issuer)
      std::abort();
    if (!req.audience.empty()) {
      auto aud = payload.value("aud", nlohmann::json{});
      bool named = aud == req.audience ||
                   (aud.is_array() && std::find(aud.begin(), aud.end(),
                                                req.audience) != aud.end());
      if (!named)
        std::abort();
    }
  }
  return 0;
}
