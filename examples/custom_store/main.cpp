// A node whose state store is the application's own (the plug-in point that
// replaces Redis): here a store that writes every bind and unbind to stdout
// as a JSON line and leaves the rest to the reference in-memory store.
//
//   build/examples/wsc-custom-store-node --listen=127.0.0.1:8080

#include "actors/actors.hpp"
#include "adapters/memory_store.hpp"
#include "app/node.hpp"
#include "app/run.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <iostream>

namespace {

void print(const char* op, const wsc::binding& b) {
  std::cout
      << nlohmann::json{{"op", op}, {"uid", b.uid}, {"conn", b.conn}}.dump()
      << std::endl;
}

/// Watches bindings on their way to `inner`; every other message of the
/// STATE_STORE interface is delegated unchanged, so `inner`'s answers (and
/// errors) reach the node as they are.
caf::behavior auditing_store(caf::event_based_actor* self,
                             wsc::state_store_actor inner) {
  self->set_default_handler(
      [inner](caf::scheduled_actor* ptr,
              caf::message_view& x) -> caf::result<caf::message> {
        auto self = static_cast<caf::event_based_actor*>(ptr);
        return self->delegate(caf::actor_cast<caf::actor>(inner),
                              x.move_content_to_message());
      });
  return {
      [self, inner](wsc::atom::bind, wsc::binding& b) {
        print("bind", b);
        return self->delegate(inner, wsc::atom::bind_v, std::move(b));
      },
      [self, inner](wsc::atom::unbind, wsc::binding& b) {
        print("unbind", b);
        return self->delegate(inner, wsc::atom::unbind_v, std::move(b));
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  wsc::node_customization custom;
  custom.store.make =
      [](caf::actor_system& sys,
         const wsc::options& opts) -> caf::expected<wsc::state_store_actor> {
    auto inner = wsc::spawn_memory_store(sys, opts);
    auto outer = sys.spawn(auditing_store, inner);
    // The inner store lives as long as the outer one.
    outer->attach_functor([inner](const caf::error&) {
      caf::anon_send_exit(inner, caf::exit_reason::user_shutdown);
    });
    return caf::actor_cast<wsc::state_store_actor>(outer);
  };
  return wsc::run_node(argc, argv, custom);
}
