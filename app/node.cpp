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
#include "net/server.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>

#include <sys/types.h>
#include <unistd.h>

#include <csignal>
#include <thread>

namespace wsc {

namespace {

/// Spawns the state store the options ask for, and checks it answers.
caf::expected<state_store_actor> spawn_store(caf::actor_system& sys,
                                             const node_context& ctx) {
  if (ctx.opts.state == "memory")
    return spawn_memory_store(sys, ctx.opts);
  return spawn_redis_store(sys, ctx.opts);
}

/// Publishes the PEER on `cluster-listen` for the peer nodes; returns the
/// address peers dial.
caf::expected<std::string> publish_peer(caf::actor_system& sys,
                                        const node_context& ctx) {
  auto& opts = ctx.opts;
  // validate() refused plain traffic off loopback without cluster-insecure.
  if (opts.cluster_tls_cert.empty() && !is_loopback(opts.cluster_listen.host))
    log::warn("cluster-insecure=true: node-to-node traffic on {} is neither "
              "encrypted nor authenticated; anyone who reaches it can inject "
              "deliveries",
              opts.cluster_listen.to_string());
  auto port =
      opts.cluster_tls_cert.empty()
          ? sys.middleman().publish(ctx.peer, opts.cluster_listen.port,
                                    opts.cluster_listen.host.c_str(), true)
          : caf::openssl::publish(ctx.peer, opts.cluster_listen.port,
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

/// Watches a long-lived actor: when it ends while the node is not
/// stopping, the node cannot serve any more. /healthz then answers 503 and
/// the process is asked to stop (run_node exits with 1, so that a service
/// manager restarts it) instead of running on as a zombie.
template<class Handle>
void watch(const Handle& hdl, const char* name, const node_context_ptr& ctx) {
  if (!hdl)
    return;
  std::weak_ptr<node_context> weak = ctx;
  hdl->attach_functor([weak, name](const caf::error& reason) {
    auto ctx = weak.lock();
    if (!ctx || ctx->draining)
      return;
    const char* expected = nullptr;
    if (!ctx->failed_actor.compare_exchange_strong(expected, name))
      return;
    log::error("{} ended unexpectedly ({}): node {} stops", name,
               to_string(reason), ctx->node_id);
    ::kill(::getpid(), SIGTERM);
  });
}

/// The started line (test harnesses read the ports from it) and warnings
/// about settings that are unsafe outside a test.
void log_started(const node_context& ctx, uint16_t port,
                 const std::string& cluster_address) {
  auto& opts = ctx.opts;
  log::info(
      "wscluster node {} started: listen={} state={}{} auth={} frame-codec={}",
      ctx.node_id, endpoint{opts.listen.host, port}.to_string(), opts.state,
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
}

} // namespace

node::node(caf::actor_system& sys, node_context_ptr ctx)
    : sys_(sys), ctx_(std::move(ctx)) {
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
  auto ctx = std::make_shared<node_context>(std::move(opts));
  ctx->custom_store = static_cast<bool>(custom_store.make);
  ctx->codec = std::move(*codec);
  auto chain = middlewares.make_handshake_chain(ctx->opts);
  if (!chain)
    return std::move(chain.error());
  auto open = middlewares.make_open_chain(ctx->opts);
  if (!open)
    return std::move(open.error());
  ctx->open = std::move(*open);
  auto store = custom_store.make ? custom_store.make(sys, ctx->opts)
                                 : spawn_store(sys, *ctx);
  if (!store)
    return std::move(store.error());
  std::unique_ptr<node> result{new node(sys, ctx)};
  result->store_ = *store;
  ctx->events = sys.spawn(event_bus, ctx);
  if (!ctx->opts.webhook_url.empty()) {
    auto hook = spawn_webhook(sys, ctx);
    if (!hook)
      return std::move(hook.error());
    result->webhook_ = *hook;
  }
  if (ctx->opts.unread_after.count() > 0)
    ctx->unread = sys.spawn(unread_checker, ctx, *store);
  ctx->registry = sys.spawn(registry, ctx, *store);
  auto cluster_address = result->spawn_cluster(custom_store);
  if (!cluster_address)
    return std::move(cluster_address.error());
  // The built-in types are registered exactly like a user's behaviour.
  behaviour_factory make_builtins = [ctx](caf::actor_system& sys) {
    return sys.spawn(builtins, ctx);
  };
  auto builtin_handler = make_builtins(sys);
  ctx->builtins = builtin_handler;
  for (auto& type : builtin_frame_types())
    result->add_behaviour(type, builtin_handler, make_builtins);
  result->api_ = sys.spawn(http_api, ctx, *store);
  auto srv = server::make(sys, ctx, std::move(*chain), result->api_);
  if (!srv)
    return std::move(srv.error());
  result->server_ = std::move(*srv);
  // Announced only once the listener is bound: a node that failed to start
  // never appears to its peers.
  caf::anon_send(result->discovery_, atom::start_v, *cluster_address);
  result->watch_actors();
  result->server_->start(ctx->opts.io_threads);
  log_started(*ctx, result->port(), *cluster_address);
  return result;
}

caf::expected<std::string>
node::spawn_cluster(const state_store_factory& custom_store) {
  auto& ctx = ctx_;
  // Heartbeats must not wait behind a backlog of deliveries: with Redis they
  // get a connection of their own, or a busy node would miss its lease and
  // be declared down while alive.
  bool own_redis = !custom_store.make && ctx->opts.state == "redis";
  auto control_store = store_;
  if (own_redis) {
    auto second = spawn_redis_store(sys_, ctx->opts);
    if (!second)
      return std::move(second.error());
    control_store = *second;
    control_store_ = control_store;
  }
  bool clustered = custom_store.make ? custom_store.shared : own_redis;
  // DISCOVERY waits for `start`; the PEER gets its handle at spawn, before
  // it is published, so no peer's hello can find the handle unset.
  discovery_ = sys_.spawn(discovery, ctx, control_store, clustered);
  ctx->peer = sys_.spawn(peer_endpoint, ctx, discovery_);
  if (own_redis) {
    // A partition between nodes that both reach Redis must not stop live
    // delivery: the PEER falls back to the relay. With TLS between
    // nodes, only a shared secret keeps nodes outside the cluster (another
    // CA's certificate) from injecting deliveries through Redis.
    if (!ctx->opts.cluster_tls_cert.empty() &&
        ctx->opts.cluster_secret.empty()) {
      log::warn("cluster-tls without cluster-secret: no relay through Redis; "
                "deliveries to a node whose link is down wait for the link");
    } else {
      auto relay = spawn_redis_relay(sys_, ctx);
      if (!relay)
        return std::move(relay.error());
      relay_ = *relay;
      caf::anon_send(ctx->peer, atom::relay_v, local_only{}, *relay);
    }
  }
  if (!clustered)
    return std::string{};
  return publish_peer(sys_, *ctx);
}

void node::watch_actors() {
  watch(ctx_->registry, "registry", ctx_);
  watch(ctx_->peer, "peer", ctx_);
  watch(ctx_->events, "event bus", ctx_);
  watch(discovery_, "discovery", ctx_);
  watch(api_, "HTTP API", ctx_);
  watch(store_, "state store", ctx_);
  watch(control_store_, "control store", ctx_);
  watch(relay_, "relay", ctx_);
  watch(webhook_, "webhook", ctx_);
  watch(ctx_->unread, "unread checker", ctx_);
}

bool node::failed() const {
  return ctx_->failed_actor.load() != nullptr;
}

uint16_t node::port() const {
  return server_->port();
}

void node::subscribe(caf::actor subscriber, uint32_t mask) {
  caf::anon_send(ctx_->events, atom::subscribe_v, mask, subscriber);
  adopt(std::move(subscriber));
}

void node::unsubscribe(const caf::actor& subscriber) {
  caf::anon_send(ctx_->events, atom::unsubscribe_v, subscriber);
}

void node::add_behaviour(const std::string& type, behaviour_actor handler,
                         behaviour_factory restart) {
  ctx_->behaviours.add(type, handler);
  auto addr = handler.address();
  if (supervisors_.count(addr) > 0)
    return;
  // The SUPERVISOR stops the behaviour when the node stops it.
  auto sup =
      sys_.spawn(supervisor, ctx_, std::move(handler), std::move(restart));
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
  auto& opts = ctx_->opts;
  log::info("node {} draining: {} connections", ctx_->node_id,
            ctx_->open_connections.load());
  ctx_->draining = true;
  if (auto failed = ctx_->failed_actor.load())
    log::warn("node {} stops after its {} failed", ctx_->node_id, failed);
  caf::scoped_actor self{sys_};
  auto timeout = opts.request_timeout;
  self->request(ctx_->registry, timeout, atom::drain_v,
                static_cast<uint32_t>(opts.drain_period.count()))
      .receive([](atom::ok) {}, [](caf::error&) {});
  // Clients are told to come back elsewhere; wait until their sockets are
  // closed (bounded), so load balancers still see /healthz 503 meanwhile.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  auto earliest = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < earliest ||
         (ctx_->open_connections > 0 &&
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
       {caf::actor_cast<caf::actor>(ctx_->registry),
        caf::actor_cast<caf::actor>(ctx_->peer),
        caf::actor_cast<caf::actor>(ctx_->events),
        caf::actor_cast<caf::actor>(discovery_),
        caf::actor_cast<caf::actor>(api_), caf::actor_cast<caf::actor>(store_),
        caf::actor_cast<caf::actor>(control_store_),
        caf::actor_cast<caf::actor>(relay_),
        caf::actor_cast<caf::actor>(webhook_),
        caf::actor_cast<caf::actor>(ctx_->unread)})
    if (hdl)
      self->send_exit(hdl, caf::exit_reason::user_shutdown);
  for (auto& hdl : adopted_)
    self->send_exit(hdl, caf::exit_reason::user_shutdown);
  adopted_.clear();
  supervisors_.clear();
  log::info("node {} stopped", ctx_->node_id);
}

} // namespace wsc
