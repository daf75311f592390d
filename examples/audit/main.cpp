// A node with an audit event actor: every REGISTER, LOGOUT, DISCOVER and
// SHUTDOWN of the node is written to stdout as one JSON line.
//
//   build/examples/wsc-audit-node --listen=127.0.0.1:8081 ... > audit.jsonl

#include "app/node.hpp"
#include "app/run.hpp"
#include "audit.hpp"

#include <caf/all.hpp>

int main(int argc, char** argv) {
  wsc::node_customization custom;
  custom.started = [](caf::actor_system& sys, wsc::node& node) {
    node.subscribe(sys.spawn(example::audit), example::audit_events);
  };
  return wsc::run_node(argc, argv, custom);
}
