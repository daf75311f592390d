// libFuzzer target: the WebSocket upgrade request as the handshake chain sees
// it: wsc::handshake_request::from_target on the request target, then the
// built-in chain (origin check, identity) with auth=none and auth=jwt.
//
// Input: "target\nheader: value\nheader: value...". Invariants: a handshake
// that is not rejected has a valid uid; with auth=jwt it is never accepted
// without a correctly signed token (the fuzzer cannot sign); a rejection is
// 400, 401 or 403 with a short reason.

#include "config/options.hpp"
#include "middleware/middleware.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

struct chains {
  wsc::handshake_chain open_auth;
  wsc::handshake_chain jwt_auth;

  chains() {
    wsc::middleware_registry registry;
    wsc::options none;
    none.allowed_origins = {"https://a.example"};
    open_auth = std::move(*registry.make_handshake_chain(none));
    wsc::options jwt;
    jwt.auth = "jwt";
    jwt.jwt_secret = "fuzz-secret";
    jwt_auth = std::move(*registry.make_handshake_chain(jwt));
  }
};

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void check(const wsc::handshake_chain& chain, wsc::handshake_context ctx,
           bool jwt) {
  auto rejection = chain.run(ctx);
  if (rejection) {
    if (rejection->status != 400 && rejection->status != 401
        && rejection->status != 403)
      std::abort();
    if (rejection->reason.empty() || rejection->reason.size() > 200)
      std::abort();
    return;
  }
  if (!wsc::valid_name(ctx.uid))
    std::abort();
  if (jwt)
    std::abort(); // accepted without a token signed with the secret
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const chains all;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nl = in.find('\n');
  auto target = in.substr(0, nl);
  wsc::handshake_context ctx;
  ctx.request = wsc::handshake_request::from_target("GET", std::string{target});
  // The path never keeps the query.
  if (ctx.request.path.size() > target.size())
    std::abort();
  auto rest = nl == std::string_view::npos ? std::string_view{}
                                           : in.substr(nl + 1);
  while (!rest.empty()) {
    auto end = rest.find('\n');
    auto line = rest.substr(0, end);
    if (auto colon = line.find(':'); colon != std::string_view::npos) {
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
      ctx.request.headers[lower(line.substr(0, colon))] = std::string{value};
    }
    if (end == std::string_view::npos)
      break;
    rest = rest.substr(end + 1);
  }
  (void) ctx.request.param("uid");
  (void) ctx.request.header("origin");
  check(all.open_auth, ctx, false);
  check(all.jwt_auth, ctx, true);
  return 0;
}
