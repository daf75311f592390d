#include "app/run.hpp"

#include "app/actor_config.hpp"
#include "config/options.hpp"
#include "protocol/error.hpp"
#include "util/log.hpp"

#include <caf/actor_system.hpp>

#include <pthread.h>

#include <csignal>
#include <cstdlib>
#include <iostream>

namespace wsc {

int run_node(int argc, char** argv, const node_customization& custom) {
  auto parsed = parse_options({argv + 1, argv + argc});
  if (!parsed) {
    std::cerr << "wscluster: " << error_message(parsed.error()) << '\n';
    return 2;
  }
  if (parsed->help) {
    std::cout << help_text();
    return 0;
  }
  if (parsed->version) {
    std::cout << "wscluster " << version() << '\n';
    return 0;
  }
  if (custom.configure) {
    custom.configure(parsed->opts);
    if (auto err = validate(parsed->opts)) {
      std::cerr << "wscluster: " << error_message(err) << '\n';
      return 2;
    }
  }
  // Every thread started from here on inherits the blocked signals, so only
  // sigwait below sees SIGINT and SIGTERM.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  log::setup(parsed->opts.log_level);
  middleware_registry middlewares;
  if (custom.middlewares)
    custom.middlewares(middlewares);
  codec_registry codecs;
  if (custom.codecs)
    custom.codecs(codecs);
  actor_config cfg;
  cfg.apply(parsed->opts);
  caf::actor_system sys{cfg};
  auto started = node::start(sys, std::move(parsed->opts), middlewares,
                             custom.store, codecs);
  if (!started) {
    std::cerr << "wscluster: " << error_message(started.error()) << '\n';
    std::_Exit(1); // do not wait for half-started actors
  }
  if (custom.started)
    custom.started(sys, **started);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*started)->stop();
  bool failed = (*started)->failed();
  started->reset();
  return failed ? 1 : 0;
}

} // namespace wsc
