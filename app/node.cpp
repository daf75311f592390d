#include "app/node.hpp"

#include "actors/builtins.hpp"
#include "actors/connection.hpp"
#include "actors/discovery.hpp"
#include "actors/event_bus.hpp"
#include "actors/http_api.hpp"
#include "actors/peer.hpp"
#include "actors/registry.hpp"
#include "actors/supervisor.hpp"
#include "actors/webhook.hpp"
#include "adapters/memory_store.hpp"
#include "adapters/redis_relay.hpp"
#include "adapters/redis_store.hpp"
#include "app/node_settings.hpp"
#include "flow/handshake_budget.hpp"
#include "net/connection_quota.hpp"
#include "net/server.hpp"
#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <sys/types.h>
#include <unistd.h>

#include <csignal>
#include <optional>
#include <thread>

namespace wsc {

namespace {

/// Spawns the state store the options ask for, and checks it answers.
caf::expected<state_store_actor> spawn_store(caf::actor_system& sys,
                                             const options& opts) {
  if (opts.state == "memory")
    return spawn_memory_store(sys, opts);
  return spawn_redis_store(sys, opts);
}

/// Publishes the PEER on `cluster-listen` for the peer nodes; returns the
/// address peers dial.
caf::expected<std::string> publish_peer(caf::actor_system& sys,
                                        const options& opts,
                                        const peer_endpoint_actor& peer) {
  // validate() refused plain traffic off loopback without cluster-insecure.
  if (opts.cluster_tls_cert.empty() && !is_loopback(opts.cluster_listen.host))
    log::warn("cluster-insecure=true: node-to-node traffic on {} is neither "
              "encrypted nor authenticated; anyone who reaches it can inject "
              "deliveries",
              opts.cluster_listen.to_string());
  // With cluster-tls-* the middleman's connections speak TLS
  // (net/cluster_tls.hpp).
  auto port = sys.middleman().publish(peer, opts.cluster_listen.port,
                                      opts.cluster_listen.host.c_str(), true);
  if (!port)
    return caf::make_error(caf::sec::cannot_open_port,
                           "cannot listen for nodes on " +
                               opts.cluster_listen.to_string() + ": " +
                               sys.render(port.error()));
  if (!opts.cluster_advertise.host.empty())
    return opts.cluster_advertise.to_string();
  return endpoint{opts.cluster_listen.host, *port}.to_string();
}

/// Whether nodes share the store (Redis, or a custom store that says so):
/// only then are there peers, a heartbeat and node ids to tell apart.
bool is_clustered(const options& opts,
                  const state_store_factory& custom_store) {
  return custom_store.make ? custom_store.shared : opts.state == "redis";
}

/// The last heartbeat of the entry with this node's id, if the store has
/// one written within `fresh_for`; none when the store does not answer (a
/// store outage is DISCOVERY's business once the node runs).
std::optional<int64_t> fresh_entry_of(caf::scoped_actor& self,
                                      const state_store_actor& store,
                                      const options& opts,
                                      std::chrono::milliseconds fresh_for) {
  std::optional<int64_t> result;
  auto fresh = [&](const std::vector<node_info>& nodes) {
    std::optional<int64_t> last;
    for (auto& info : nodes)
      if (info.id == opts.node_id &&
          frames::now_ms() - info.last_heartbeat_ms <= fresh_for.count())
        last = info.last_heartbeat_ms;
    return last;
  };
  self->request(store, opts.request_timeout, atom::nodes_v)
      .receive([&](std::vector<node_info>& nodes) { result = fresh(nodes); },
               [&](caf::error& err) {
                 // Ids others wrote into the store: the entries read are a
                 // sample (discovery.hpp, partial_nodes).
                 if (auto sample = sample_of(err))
                   result = fresh(*sample);
               });
  return result;
}

/// Refuses to start while a live node has this node's id: both would
/// renew one entry, re-announce themselves at every heartbeat and take
/// each other's deliveries. A predecessor that crashed moments ago has a
/// fresh entry too; it is told apart by its heartbeat not moving for two
/// heartbeat intervals.
caf::error refuse_duplicate_id(caf::actor_system& sys,
                               const state_store_actor& store,
                               const options& opts) {
  caf::scoped_actor self{sys};
  auto fresh_for = opts.node_timeout + opts.heartbeat;
  auto first = fresh_entry_of(self, store, opts, fresh_for);
  if (!first)
    return caf::none;
  log::info("node id {} has a fresh entry in the state store: checking that "
            "its node is gone",
            opts.node_id);
  std::this_thread::sleep_for(2 * opts.heartbeat +
                              std::chrono::milliseconds{100});
  auto second = fresh_entry_of(self, store, opts, fresh_for);
  // Stores report the time of the last heartbeat on this host's clock
  // (Redis: from its age), so an entry nobody renews moves by a few ms.
  if (!second || *second - *first < opts.heartbeat.count() / 2)
    return caf::none;
  return caf::make_error(caf::sec::runtime_error,
                         "node id '" + opts.node_id +
                             "' is in use by a live node (its heartbeat "
                             "goes on): give this node another node-id");
}

/// Watches a long-lived actor: when it ends while the node is not
/// stopping, the node cannot serve any more. /healthz then answers 503 and
/// the process is asked to stop (run_node exits with 1, so that a service
/// manager restarts it) instead of running on as a zombie.
template<class Handle>
void watch(const Handle& hdl, const char* name, const node_health_ptr& health,
           const std::string& node_id) {
  if (!hdl)
    return;
  std::weak_ptr<node_health> weak = health;
  hdl->attach_functor([weak, name, node_id](const caf::error& reason) {
    auto health = weak.lock();
    if (!health || health->draining)
      return;
    const char* expected = nullptr;
    if (!health->failed_actor.compare_exchange_strong(expected, name))
      return;
    log::error("{} ended unexpectedly ({}): node {} stops", name,
               to_string(reason), node_id);
    ::kill(::getpid(), SIGTERM);
  });
}

/// The started line (test harnesses read the ports from it) and warnings
/// about settings that are unsafe outside a test.
void log_started(const options& opts, const std::string& node_id, uint16_t port,
                 const std::string& cluster_address) {
  log::info(
      "wscluster node {} started: listen={} state={}{} auth={} frame-codec={}",
      node_id, endpoint{opts.listen.host, port}.to_string(), opts.state,
      cluster_address.empty() ? std::string{} : " cluster=" + cluster_address,
      opts.auth, opts.frame_codec);
  if (opts.auth == "jwt" && opts.jwt_secret.size() < 32)
    log::warn("jwt-secret is shorter than 32 bytes: HS256 secrets should be "
              "long and random");
  if (opts.api_key.empty())
    log::warn("the HTTP API has no api-key: anyone who reaches {} can send, "
              "broadcast, disconnect users and read presence{}",
              opts.listen.to_string(),
              is_loopback(opts.listen.host)
                  ? " (loopback only)"
                  : " (api-insecure=true on a non-loopback address)");
  if (opts.auth == "none" && !is_loopback(opts.listen.host))
    log::warn("auth=none on a non-loopback address: any client can claim any "
              "uid; use auth=jwt in production");
  if (opts.max_connections_per_address == 0 &&
      (opts.handshake_rate_per_address != 0 ||
       opts.stored_bytes_rate_per_address != 0))
    log::warn(
        "max-connections-per-address=0 but handshake-rate-per-address={} "
        "and stored-bytes-rate-per-address={}: if every client comes "
        "through one proxy address, all of them share those budgets (set "
        "them to 0 too, or give the handshake chain a middleware that sets "
        "the client's address)",
        opts.handshake_rate_per_address, opts.stored_bytes_rate_per_address);
}

} // namespace

node::node(caf::actor_system& sys, options opts)
    : sys_(sys), opts_(std::move(opts)),
      who_(node_identity::draw(opts_.node_id)),
      health_(std::make_shared<node_health>()),
      metrics_(std::make_shared<node_metrics>()),
      cluster_events_(std::make_shared<cluster_event_log>()),
      behaviours_(std::make_shared<behaviour_table>()),
      subscribed_events_(std::make_shared<std::atomic<uint32_t>>(0)) {
  // nop
}

node::~node() {
  stop();
}

caf::expected<std::unique_ptr<node>>
node::start(caf::actor_system& sys, options opts,
            const middleware_registry& middlewares,
            const state_store_factory& custom_store,
            const codec_registry& codecs) {
  auto codec = codecs.make(opts);
  if (!codec)
    return std::move(codec.error());
  auto chain = middlewares.make_handshake_chain(opts);
  if (!chain)
    return std::move(chain.error());
  auto open = middlewares.make_open_chain(opts);
  if (!open)
    return std::move(open.error());
  auto store =
      custom_store.make ? custom_store.make(sys, opts) : spawn_store(sys, opts);
  if (!store)
    return std::move(store.error());
  if (is_clustered(opts, custom_store))
    if (auto err = refuse_duplicate_id(sys, *store, opts))
      return err;
  std::unique_ptr<node> result{new node(sys, std::move(opts))};
  result->store_ = *store;
  if (auto err = result->spawn_core(static_cast<bool>(custom_store.make)))
    return err;
  auto cluster_address = result->spawn_cluster(custom_store);
  if (!cluster_address)
    return std::move(cluster_address.error());
  if (auto err = result->spawn_front(std::move(*open), std::move(*chain),
                                     std::move(*codec)))
    return err;
  // Announced only once the listener is bound: a node that failed to start
  // never appears to its peers.
  caf::anon_send(result->discovery_, atom::start_v, *cluster_address);
  result->watch_actors();
  result->server_->start(result->opts_.io_threads);
  log_started(result->opts_, result->who_.id, result->port(), *cluster_address);
  return result;
}

caf::error node::spawn_core(bool custom_store) {
  events_ = sys_.spawn(event_bus, subscribed_events_);
  if (!opts_.webhook_url.empty()) {
    auto hook =
        spawn_webhook(sys_, settings::webhook(opts_), who_, metrics_, events_);
    if (!hook)
      return std::move(hook.error());
    webhook_ = *hook;
  }
  if (opts_.unread_after.count() > 0)
    unread_ = sys_.spawn(unread_checker, settings::unread(opts_), store_,
                         events_, subscribed_events_);
  registry_ =
      sys_.spawn(registry, settings::registry(opts_, who_, custom_store),
                 store_, events_, unread_, metrics_);
  return caf::none;
}

caf::expected<std::string>
node::spawn_cluster(const state_store_factory& custom_store) {
  // Heartbeats must not wait behind a backlog of deliveries: with Redis they
  // get a connection of their own, or a busy node would miss its lease and
  // be declared down while alive.
  bool own_redis = !custom_store.make && opts_.state == "redis";
  auto control_store = store_;
  if (own_redis) {
    auto second = spawn_redis_store(sys_, opts_);
    if (!second)
      return std::move(second.error());
    control_store = *second;
    control_store_ = control_store;
  }
  bool clustered = is_clustered(opts_, custom_store);
  // DISCOVERY waits for `start`; the PEER gets its handle at spawn, and
  // DISCOVERY and the REGISTRY get the PEER's in a message, all before it
  // is published: no peer's hello finds a handle unset.
  discovery_ = sys_.spawn(
      discovery, settings::discovery(opts_, who_, clustered), control_store,
      registry_, events_, health_, metrics_, cluster_events_);
  peer_ = sys_.spawn(peer_endpoint, settings::peer(opts_, who_), registry_,
                     discovery_, metrics_);
  caf::anon_send(registry_, atom::peer_v, local_only{}, peer_);
  caf::anon_send(discovery_, atom::peer_v, local_only{}, peer_);
  if (own_redis) {
    // A partition between nodes that both reach Redis must not stop live
    // delivery: the PEER falls back to the relay. With TLS between
    // nodes, only a shared secret keeps nodes outside the cluster (another
    // CA's certificate) from injecting deliveries through Redis.
    if (!opts_.cluster_tls_cert.empty() && opts_.cluster_secret.empty()) {
      log::warn("cluster-tls without cluster-secret: no relay through Redis; "
                "deliveries to a node whose link is down wait for the link");
    } else {
      auto relay = spawn_redis_relay(
          sys_, relay_setup{opts_, who_, registry_, metrics_});
      if (!relay)
        return std::move(relay.error());
      relay_ = *relay;
      caf::anon_send(peer_, atom::relay_v, local_only{}, *relay);
    }
  }
  if (!clustered)
    return std::string{};
  return publish_peer(sys_, opts_, peer_);
}

caf::error node::spawn_front(open_chain open, handshake_chain chain,
                             frame_codec_ptr codec) {
  // The built-in types are registered exactly like a user's behaviour.
  behaviour_factory make_builtins = [cfg = settings::builtins(opts_),
                                     registry =
                                         registry_](caf::actor_system& sys) {
    return sys.spawn(builtins, cfg, registry);
  };
  auto builtin_handler = make_builtins(sys_);
  for (auto& type : builtin_frame_types())
    add_behaviour(type, builtin_handler, make_builtins);
  api_ = sys_.spawn(http_api, settings::http_api(opts_, who_), registry_,
                    store_, health_, metrics_, cluster_events_);
  auto connections = std::make_shared<const connection_env>(connection_env{
      opts_.request_timeout, opts_.rate_limit, settings::builtins(opts_),
      registry_, events_, subscribed_events_, behaviours_, builtin_handler,
      metrics_, std::move(open)});
  server_setup setup{opts_,
                     std::make_shared<conn_id_source>(who_),
                     health_,
                     std::make_shared<connection_quota>(),
                     std::make_shared<handshake_budget>(
                         static_cast<double>(opts_.handshake_rate_per_address)),
                     metrics_,
                     std::move(codec),
                     std::move(connections)};
  auto srv = server::make(sys_, std::move(setup), std::move(chain), api_);
  if (!srv)
    return std::move(srv.error());
  server_ = std::move(*srv);
  return caf::none;
}

void node::watch_actors() {
  auto watch_one = [this](const auto& hdl, const char* name) {
    watch(hdl, name, health_, who_.id);
  };
  watch_one(registry_, "registry");
  watch_one(peer_, "peer");
  watch_one(events_, "event bus");
  watch_one(discovery_, "discovery");
  watch_one(api_, "HTTP API");
  watch_one(store_, "state store");
  watch_one(control_store_, "control store");
  watch_one(relay_, "relay");
  watch_one(webhook_, "webhook");
  watch_one(unread_, "unread checker");
}

bool node::failed() const {
  return health_->failed_actor.load() != nullptr;
}

uint16_t node::port() const {
  return server_->port();
}

void node::subscribe(caf::actor subscriber, uint32_t mask) {
  caf::anon_send(events_, atom::subscribe_v, mask, subscriber);
  adopt(std::move(subscriber));
}

void node::unsubscribe(const caf::actor& subscriber) {
  caf::anon_send(events_, atom::unsubscribe_v, subscriber);
}

void node::add_behaviour(const std::string& type, behaviour_actor handler,
                         behaviour_factory restart) {
  behaviours_->add(type, handler);
  auto addr = handler.address();
  if (supervisors_.count(addr) > 0)
    return;
  // The SUPERVISOR stops the behaviour when the node stops it.
  auto sup = sys_.spawn(supervisor, behaviours_, health_, std::move(handler),
                        std::move(restart));
  supervisors_.emplace(std::move(addr), sup);
  adopt(caf::actor_cast<caf::actor>(std::move(sup)));
}

void node::adopt(caf::actor hdl) {
  adopted_.push_back(std::move(hdl));
}

void node::stop() {
  if (stopped_ || !server_)
    return;
  stopped_ = true;
  using namespace std::chrono_literals;
  auto& health = *health_;
  log::info("node {} draining: {} connections", who_.id,
            health.open_connections.load());
  health.draining = true;
  if (auto failed = health.failed_actor.load())
    log::warn("node {} stops after its {} failed", who_.id, failed);
  caf::scoped_actor self{sys_};
  auto timeout = opts_.request_timeout;
  self->request(registry_, timeout, atom::drain_v,
                static_cast<uint32_t>(opts_.drain_period.count()))
      .receive([](atom::ok) {}, [](caf::error&) {});
  // Clients are told to come back elsewhere; wait until their sockets are
  // closed (bounded), so load balancers still see /healthz 503 meanwhile.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  auto earliest = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < earliest ||
         (health.open_connections > 0 &&
          std::chrono::steady_clock::now() < deadline))
    std::this_thread::sleep_for(20ms);
  server_->stop_accepting();
  self->request(discovery_, timeout, atom::shutdown_v)
      .receive([](atom::ok) {}, [](caf::error&) {});
  if (webhook_) {
    // The offline events of the drain go out before the node does (bounded).
    self->request(webhook_, timeout, atom::drain_v, uint32_t{3000})
        .receive([](atom::ok) {}, [](caf::error&) {});
  }
  server_->stop();
  server_.reset();
  for (auto hdl :
       {caf::actor_cast<caf::actor>(registry_),
        caf::actor_cast<caf::actor>(peer_),
        caf::actor_cast<caf::actor>(events_),
        caf::actor_cast<caf::actor>(discovery_),
        caf::actor_cast<caf::actor>(api_), caf::actor_cast<caf::actor>(store_),
        caf::actor_cast<caf::actor>(control_store_),
        caf::actor_cast<caf::actor>(relay_),
        caf::actor_cast<caf::actor>(webhook_),
        caf::actor_cast<caf::actor>(unread_)})
    if (hdl)
      self->send_exit(hdl, caf::exit_reason::user_shutdown);
  for (auto& hdl : adopted_)
    self->send_exit(hdl, caf::exit_reason::user_shutdown);
  adopted_.clear();
  supervisors_.clear();
  log::info("node {} stopped", who_.id);
}

} // namespace wsc
