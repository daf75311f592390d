// The node of the embedding tests, built against the installed package: the
// three examples together, plus behaviours that fail on purpose.
//
//   bot.*     the chat bot (examples/bot), restarted if it fails
//   fault.*   fails on purpose, restarted from its factory
//   doomed.*  fails on purpose, registered without a factory
//   AUDIT     event actor writing JSON lines to stdout (examples/audit)
//   no-scanner  handshake middleware: `X-Scanner` gets 403
//
// `<prefix>.throw` throws, `<prefix>.die` dies holding the request (a linked
// helper fails), anything else answers {"type":"pong","actor":<actor id>}.

#include "app/node.hpp"

#include "app/run.hpp"
#include "audit.hpp"
#include "bot.hpp"
#include "header_guard.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

using json = nlohmann::json;

struct fault_state {
  static inline const char* name = "fault";
};

wsc::behaviour_actor::behavior_type
fault(wsc::behaviour_actor::stateful_pointer<fault_state> self) {
  return {
      [self](wsc::atom::frame, wsc::frame_context&,
             wsc::json_ptr& frame) -> caf::result<wsc::json_ptr> {
        auto type = (*frame)["type"].get<std::string>();
        auto verb = type.substr(type.find('.') + 1);
        if (verb == "throw")
          throw std::runtime_error("thrown on purpose");
        if (verb == "die") {
          auto rp = self->make_response_promise<wsc::json_ptr>();
          self->spawn<caf::linked>([](caf::event_based_actor* helper) {
            helper->quit(caf::make_error(caf::sec::runtime_error,
                                         "helper failed on purpose"));
          });
          return rp; // never delivered: the link kills this actor first
        }
        return std::make_shared<const json>(
            json{{"type", "pong"}, {"actor", self->id()}});
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  wsc::node_customization custom;
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
  custom.started = [](caf::actor_system& sys, wsc::node& node) {
    node.spawn_behaviour("bot.*", example::bot, node.messaging(),
                         node.settings().request_timeout);
    node.subscribe(sys.spawn(example::audit), example::audit_events);
    node.spawn_behaviour("fault.*", fault);
    node.add_behaviour("doomed.*", sys.spawn(fault));
  };
  return wsc::run_node(argc, argv, custom);
}
