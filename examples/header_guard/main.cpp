// A node that turns away WebSocket upgrades carrying `X-Scanner` with 403.
//
//   build/examples/wsc-guard-node --listen=127.0.0.1:8080
//   curl -i -H 'X-Scanner: 1' -H 'Connection: Upgrade' -H 'Upgrade: websocket'
//        ... 'http://127.0.0.1:8080/ws?uid=x'      -> HTTP/1.1 403

#include "app/run.hpp"
#include "header_guard.hpp"

#include <algorithm>
#include <memory>

int main(int argc, char** argv) {
  wsc::node_customization custom;
  // By code: first in the handshake chain, unless `handshake-chain` in the
  // config already places it.
  custom.configure = [](wsc::options& opts) {
    auto& chain = opts.handshake_chain;
    if (std::find(chain.begin(), chain.end(), "no-scanner") == chain.end())
      chain.insert(chain.begin(), "no-scanner");
  };
  custom.middlewares = [](wsc::middleware_registry& registry) {
    registry.add_handshake("no-scanner", [](const wsc::options&) {
      return std::make_shared<example::header_guard>(
          "X-Scanner", 403, "scanners are not welcome here");
    });
  };
  return wsc::run_node(argc, argv, custom);
}
