#pragma once

#include "app/node.hpp"
#include "config/options.hpp"
#include "middleware/middleware.hpp"
#include "protocol/codec.hpp"

#include <functional>

namespace wsc {

/// What an application adds to a node before it serves: behaviours, event
/// actors, middlewares, frame codecs.
struct node_customization {
  /// Replaces the built-in state stores when `store.make` is set.
  state_store_factory store;

  /// Called once the options are read (command line, config file), before
  /// the node starts: settings made in code, e.g. a middleware put into
  /// `handshake_chain`. The result is validated like the command line.
  std::function<void(options&)> configure;
  /// Called before the node starts: add frame codecs by name here and pick
  /// one with `frame-codec` (by config or `configure`).
  std::function<void(codec_registry&)> codecs;
  /// Called before the node starts: add middlewares by name here and list
  /// them in `handshake-chain` / `open-chain` (by config or `configure`).
  std::function<void(middleware_registry&)> middlewares;
  /// Called once the node serves: spawn behaviours and event actors here.
  std::function<void(caf::actor_system&, node&)> started;
};

/// The whole life of a node process: reads options from the command line
/// and config file, starts the node, serves until SIGINT or SIGTERM, drains
/// and stops. Returns the process exit code (0 after a graceful stop, 1 when
/// the node cannot start, 2 for bad options).
int run_node(int argc, char** argv, const node_customization& custom = {});

} // namespace wsc
