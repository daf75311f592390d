// A node with a chat bot: the built-in frame types plus `bot.*`.
//
//   build/examples/wsc-bot-node --listen=127.0.0.1:8080

#include "app/node.hpp"
#include "app/run.hpp"
#include "bot.hpp"

#include <caf/all.hpp>

int main(int argc, char** argv) {
  wsc::node_customization custom;
  custom.started = [](caf::actor_system&, wsc::node& node) {
    // Restarted from the same arguments if it ever fails.
    node.spawn_behaviour("bot.*", example::bot, node.messaging(),
                         node.settings().request_timeout);
  };
  return wsc::run_node(argc, argv, custom);
}
