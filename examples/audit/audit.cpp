#include "audit.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>

namespace example {

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

} // namespace

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

} // namespace example
