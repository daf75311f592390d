#pragma once

// Shared fixtures of the deterministic actor tests.

#include "actors/actors.hpp"
#include "actors/node_context.hpp"
#include "config/actor_config.hpp"

#include <caf/test/dsl.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace wsc::test {

/// The actor configuration of the tests: every type registered, no network.
struct test_config : actor_config {
  test_config() : actor_config(false) {
    // nop
  }
};

/// Records what a connection actor writes and closes, instead of a socket.
class recording_sink : public connection_sink {
public:
  void write(frame_ptr frame, bool) override {
    std::lock_guard guard{mtx};
    frames.push_back(*frame);
  }

  void close(uint16_t code, std::string reason) override {
    std::lock_guard guard{mtx};
    close_code = code;
    close_reason = std::move(reason);
  }

  /// Frames written so far, oldest first; clears the record.
  std::vector<std::string> take() {
    std::lock_guard guard{mtx};
    auto result = std::move(frames);
    frames.clear();
    return result;
  }

  std::mutex mtx;
  std::vector<std::string> frames;
  uint16_t close_code = 0;
  std::string close_reason;
};

/// A deterministic scheduler and a node context with default options.
struct node_fixture : ::test_coordinator_fixture<test_config> {
  node_fixture() : ctx(std::make_shared<node_context>(make_options())) {
    // nop
  }

  /// Actors and the node context reference each other: stop them all, or
  /// the actor system waits for them forever.
  ~node_fixture() override {
    for (auto& hdl : spawned)
      caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
    for (auto hdl : {caf::actor_cast<caf::actor>(ctx->registry),
                     caf::actor_cast<caf::actor>(ctx->events),
                     caf::actor_cast<caf::actor>(ctx->discovery)})
      if (hdl)
        caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
    run();
  }

  /// Remembers an actor to stop at the end of the test.
  template<class Handle>
  Handle track(Handle hdl) {
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  std::vector<caf::actor> spawned;

  static options make_options() {
    options opts;
    opts.node_id = "n1";
    return opts;
  }

  node_context_ptr ctx;
};

} // namespace wsc::test
