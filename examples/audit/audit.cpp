// A node with an audit event actor: every REGISTER, LOGOUT, DISCOVER and
// SHUTDOWN of the node is written to stdout as one JSON line.
//
//   build/examples/wsc-audit-node --listen=127.0.0.1:8081 ... > audit.jsonl

#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "app/run.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <iostream>

namespace {

using json = nlohmann::json;

void print(json line) {
  line["ts"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  std::cout << line.dump() << std::endl; // one flushed line per event
}

json describe(const char* event, const wsc::conn_ref& who) {
  return {{"event", event},
          {"node", who.node},
          {"conn", who.conn},
          {"uid", who.uid}};
}

caf::behavior audit(caf::event_based_actor*) {
  return {
      [](const wsc::register_event& ev) {
        print(describe("REGISTER", ev.who));
      },
      [](const wsc::logout_event& ev) { print(describe("LOGOUT", ev.who)); },
      [](const wsc::discover_event& ev) {
        print({{"event", "DISCOVER"}, {"node", ev.node}});
      },
      [](const wsc::shutdown_event& ev) {
        print(
            {{"event", "SHUTDOWN"}, {"node", ev.node}, {"reason", ev.reason}});
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  wsc::node_customization custom;
  custom.started = [](caf::actor_system& sys, wsc::node& node) {
    node.subscribe(sys.spawn(audit), wsc::on_register | wsc::on_logout |
                                         wsc::on_discover | wsc::on_shutdown);
  };
  return wsc::run_node(argc, argv, custom);
}
