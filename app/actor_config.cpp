#include "app/actor_config.hpp"

#include "actors/actors.hpp"
#include "loop/loop_coordinator.hpp"
#include "net/cluster_guard.hpp"
#include "protocol/error.hpp"

#include <caf/atom.hpp>
#include <caf/io/middleman.hpp>
#include <caf/timespan.hpp>

namespace wsc {

namespace {

/// Nodes of different protocol versions refuse to peer.
constexpr const char* protocol_id = "wscluster/3";

} // namespace

actor_config::actor_config(bool with_network) {
  add_message_types<caf::id_block::wscluster>();
  add_message_types<caf::id_block::wscluster_actors>();
  add_error_category(ec_category,
                     [](uint8_t code, caf::atom_value,
                        const caf::message& ctx) -> std::string {
                       auto text = std::string{"wsc::"} +
                                   to_string(static_cast<ec>(code));
                       if (ctx.match_elements<std::string>())
                         text += ": " + ctx.get_as<std::string>(0);
                       return text;
                     });
  if (with_network) {
    // CAF's network backend with bounded reads on the cluster port.
    load<caf::io::middleman, net::guarded_multiplexer>();
    set("middleman.app-identifiers", std::vector<std::string>{protocol_id});
  }
}

void actor_config::apply(const options& opts) {
  if (opts.scheduler_policy == "loop") {
    // CAF builds no coordinator of its own when a module is the scheduler.
    loop_coordinator::install(*this, opts.io_threads);
  } else {
    set("scheduler.max-threads", static_cast<size_t>(opts.actor_threads));
    set("scheduler.policy", caf::atom_from_string(opts.scheduler_policy));
  }
  // BASP's own liveness: a hung or partitioned peer is noticed even when it
  // holds the TCP connection open.
  auto heartbeat = std::min(opts.heartbeat, options::duration{500});
  set("middleman.heartbeat-interval", caf::timespan{heartbeat});
  set("middleman.connection-timeout", caf::timespan{opts.node_timeout});
  if (!opts.cluster_tls_cert.empty()) {
    // Mutual TLS between nodes: each side presents a certificate signed by
    // the cluster CA and refuses peers without one (the guarded_multiplexer
    // reads these).
    openssl_certificate = opts.cluster_tls_cert;
    openssl_key = opts.cluster_tls_key;
    openssl_cafile = opts.cluster_tls_ca;
  }
}

} // namespace wsc
