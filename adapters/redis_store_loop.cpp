// The STORE on an event loop (scheduler-policy=loop, single Redis).
//
// The detached STORE (redis_store.cpp) costs each round trip two thread
// hand-offs: the request wakes its thread, the answer wakes the requester's
// loop, and the thread sleeps in a blocking read in between. Here the STORE
// is an actor pinned to event loop 0 and its connection a redis_pipeline on
// that loop: requests from actors on loop 0 are queue pushes, the socket is
// read when epoll says so, answers are delivered from the loop. The batch
// works as in the thread: it leaves store-batch-delay after its first
// request (or when full), one batch in flight at a time, its stages in
// lockstep (redis_store_state::begin_flight/end_stage). Connecting (a
// blocking handshake with a timeout) runs on a short-lived detached actor,
// never on the loop; while Redis is unreachable requests fail at once, as
// with the thread, and a connect is tried every retry interval.

#include "adapters/redis_pipeline.hpp"
#include "adapters/redis_store_state.hpp"
#include "loop/loop_coordinator.hpp"
#include "loop/loop_pinned.hpp"
#include "protocol/error.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>

namespace wsc::redis_store_impl {

/// What a connect attempt found: a connection with its scripts, or why not.
struct redis_link {
  redis_connection conn;
  std::array<std::string, redis_scripts::script_count> shas;
  caf::error error;
  /// How long the attempt took (next_retry_interval).
  steady_clock::duration took{};
};

using redis_link_ptr = std::shared_ptr<redis_link>;

} // namespace wsc::redis_store_impl

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsc::redis_store_impl::redis_link_ptr)

namespace wsc::redis_store_impl {

namespace asio = boost::asio;

namespace {

/// Connects and loads the scripts, off the loop; answers `store`.
void connect_worker(caf::blocking_actor* self, redis_store_config cfg,
                    caf::actor store) {
  block_sigpipe_in_this_thread();
  auto started = steady_clock::now();
  auto link = std::make_shared<redis_link>();
  if (auto conn = redis_connection::open(cfg.url, cfg.connect_timeout,
                                         cfg.io_timeout)) {
    link->conn = std::move(*conn);
    for (size_t i = 0; i < redis_scripts::script_count && !link->error; ++i) {
      auto src =
          redis_scripts::source(static_cast<script>(i), cfg.session_groups);
      if (auto sha = link->conn.load_script(src))
        link->shas[i] = std::move(*sha);
      else
        link->error = std::move(sha.error());
    }
  } else {
    link->error = std::move(conn.error());
  }
  link->took = steady_clock::now() - started;
  self->send(store, std::move(link));
}

/// Everything the STORE does on the loop. Shared with the handlers of its
/// timers and pipeline, which may outlive the actor for a moment.
class loop_store : public std::enable_shared_from_this<loop_store> {
public:
  loop_store(asio::io_context& ioc, redis_store_config cfg)
      : ioc_(ioc), batch_timer_(ioc), retry_timer_(ioc) {
    st.cfg = std::move(cfg);
    st.retry_interval = st.cfg.retry_interval;
    st.batch.reserve(st.cfg.max_batch);
  }

  redis_store_state st;

  /// Set once by the actor: where connect attempts answer.
  caf::actor_system* system = nullptr;
  caf::weak_actor_ptr self;

  void use(redis_connection conn,
           std::array<std::string, redis_scripts::script_count> shas) {
    st.shas = std::move(shas);
    pipe_ =
        redis_pipeline::make(ioc_, std::move(conn), st.cfg.io_timeout,
                             [weak = weak_from_this()](const caf::error& why) {
                               if (auto self = weak.lock())
                                 self->lost(why);
                             });
    if (!pipe_->ok())
      lost(pipe_->error());
  }

  void add(job j) {
    st.add(std::move(j));
    if (st.batch.empty())
      return;
    if (!up()) {
      // As the thread does: nothing works while Redis is unreachable.
      st.fail_batch();
      return;
    }
    if (st.batch.size() >= st.cfg.max_batch)
      due_ = true;
    else if (st.batch.size() == 1)
      start_batch_delay();
    if (due_ && !busy_)
      launch();
  }

  /// A connect attempt's result.
  void connected(redis_link& link) {
    connecting_ = false;
    if (link.error) {
      st.connect_failed(link.took);
      return lost(link.error); // and try again after the interval
    }
    use(std::move(link.conn), std::move(link.shas));
    if (up())
      st.connect_succeeded();
  }

  /// The actor exits: answers what waits and closes the connection (which
  /// also ends the cycle of the pipeline's handlers holding this object).
  void shutdown(const caf::error& reason) {
    stopped_ = true;
    auto err = reason ? reason : make_error(ec::unavailable, "STORE stopped");
    for (auto& j : st.batch)
      j.promise.deliver(err);
    st.batch.clear();
    if (pipe_)
      pipe_->close(); // a flight in progress gets its errors now
    batch_timer_.cancel();
    retry_timer_.cancel();
  }

private:
  bool up() const { return pipe_ != nullptr && pipe_->ok(); }

  void lost(const caf::error& why) {
    if (stopped_)
      return;
    st.lost(why); // logs once per outage
    if (!connecting_)
      retry_later();
  }

  void start_batch_delay() {
    if (st.cfg.batch_delay.count() == 0) {
      // At the end of this loop turn: what else this turn queues joins.
      asio::post(ioc_, [weak = weak_from_this()] {
        if (auto self = weak.lock())
          self->batch_delay_over();
      });
      return;
    }
    batch_timer_.expires_after(st.cfg.batch_delay);
    batch_timer_.async_wait(
        [weak = weak_from_this()](const boost::system::error_code& ec) {
          if (auto self = weak.lock(); self && !ec)
            self->batch_delay_over();
        });
  }

  void batch_delay_over() {
    if (st.batch.empty())
      return;
    due_ = true;
    if (!busy_)
      launch();
  }

  /// Sends the batch: one flight at a time, its stages one after the other.
  void launch() {
    due_ = false;
    if (st.batch.empty())
      return;
    if (!up())
      return st.fail_batch();
    busy_ = true;
    st.begin_flight(flight_);
    // What did not fit (more than max-batch came meanwhile) goes next.
    due_ = !st.batch.empty();
    next_stage();
  }

  void next_stage() {
    st.stage_commands(flight_);
    if (flight_.active.empty())
      return land();
    round_trip(flight_.out.commands, [this](auto& replies, auto& replicas) {
      st.end_stage(flight_, replies, replicas);
      next_stage();
    });
  }

  /// After the last stage: the followups leave (pipelined before the next
  /// batch; nobody waits for them), then the next batch if it is due.
  void land() {
    if (!flight_.followups.empty() && up()) {
      // They outlive the flight: the handler keeps them until the replies.
      auto followups = std::make_shared<std::vector<redis_command>>(
          std::move(flight_.followups));
      std::vector<const redis_command*> cmds;
      for (auto& cmd : *followups)
        cmds.push_back(&cmd);
      round_trip(cmds, [followups](auto&, auto&) {});
    }
    flight_ = flight{};
    busy_ = false;
    if (!st.batch.empty() && (due_ || st.batch.size() >= st.cfg.max_batch))
      launch();
  }

  using reply_list = redis_round_trip::reply_list;

  /// Runs `cmds` in one round trip (a second one after NOSCRIPT) and calls
  /// `done` with a reply per command and what WAIT confirmed of each
  /// (redis_round_trip::replicas), as redis_store_state::run does with a
  /// blocking connection.
  template<class F>
  void round_trip(const std::vector<const redis_command*>& cmds, F done) {
    auto rt = std::make_shared<redis_round_trip>(st.round_trip(cmds));
    // Every handler keeps the STORE alive until the replies came.
    auto finish = [this, keep = shared_from_this(), rt, done]() mutable {
      st.check_replicas(*rt);
      done(rt->replies(), rt->replicas());
    };
    if (cmds.empty()) // a stage in which every job waits
      return finish();
    auto sent = up() && pipe_->send(rt->argvs(),
                                    [this, rt, finish](reply_list got) mutable {
                                      rt->take(std::move(got));
                                      retry_noscript(rt, std::move(finish));
                                    });
    if (!sent) {
      rt->fail(st.unavailable());
      finish();
    }
  }

  /// NOSCRIPT (Redis lost our scripts, e.g. SCRIPT FLUSH or a restart behind
  /// a proxy): loads them again and retries those commands, in one round
  /// trip (Redis runs the loads first).
  template<class F>
  void retry_noscript(std::shared_ptr<redis_round_trip> rt, F finish) {
    if (rt->noscript().empty() || !up())
      return finish();
    log::warn("Redis lost our Lua scripts (NOSCRIPT): reloading them");
    auto retry = std::make_shared<redis_round_trip>(rt->retry());
    std::vector<std::string> sources;
    std::vector<std::vector<std::string_view>> argvs;
    for (size_t i = 0; i < redis_scripts::script_count; ++i)
      sources.push_back(
          redis_scripts::source(static_cast<script>(i), st.cfg.session_groups));
    for (auto& src : sources)
      argvs.push_back({"SCRIPT", "LOAD", src});
    argvs.insert(argvs.end(), retry->argvs().begin(), retry->argvs().end());
    auto sent = pipe_->send(argvs, [rt, retry, finish](reply_list got) mutable {
      auto loads = got.begin() + redis_scripts::script_count;
      caf::error refused;
      for (auto i = got.begin(); i != loads && !refused; ++i) {
        if (!*i)
          refused = i->error();
        else if ((**i)->type == REDIS_REPLY_ERROR)
          refused = redis_reply_error(***i);
      }
      got.erase(got.begin(), loads);
      retry->take(std::move(got));
      if (refused)
        rt->refuse(refused);
      else
        rt->merge(std::move(*retry));
      finish();
    });
    if (!sent)
      finish();
  }

  void retry_later() {
    if (connecting_)
      return;
    retry_timer_.expires_after(st.retry_interval);
    retry_timer_.async_wait(
        [weak = weak_from_this()](const boost::system::error_code& ec) {
          if (auto self = weak.lock(); self && !ec)
            self->reconnect();
        });
  }

  void reconnect() {
    if (up() || connecting_ || stopped_)
      return;
    if (system == nullptr) // the actor did not start yet
      return retry_later();
    auto store = caf::actor_cast<caf::actor>(self.lock());
    if (!store)
      return;
    connecting_ = true;
    pipe_.reset();
    system->spawn<caf::detached>(connect_worker, st.cfg, std::move(store));
  }

  asio::io_context& ioc_;
  asio::steady_timer batch_timer_;
  asio::steady_timer retry_timer_;
  std::shared_ptr<redis_pipeline> pipe_;
  flight flight_;
  /// A batch is in flight.
  bool busy_ = false;
  /// The current batch's delay is over (or it is full).
  bool due_ = false;
  bool connecting_ = false;
  /// Set by shutdown(): no reconnects any more.
  bool stopped_ = false;
};

/// The actor's state. Its last owner may be any thread (CAF destroys the
/// state of an actor nobody references where the last reference goes), so it
/// touches nothing of the loop: the pipeline ends with its last handler.
struct loop_store_state {
  static inline const char* name = "redis-store";
  std::shared_ptr<loop_store> store;
};

class loop_store_actor final
    : public loop_pinned<caf::stateful_actor<loop_store_state>> {
public:
  using super = loop_pinned<caf::stateful_actor<loop_store_state>>;

  loop_store_actor(caf::actor_config& cfg, caf::execution_unit* home,
                   std::shared_ptr<loop_store> store)
      : super(cfg, home) {
    state.store = std::move(store);
  }

  caf::behavior make_behavior() override {
    auto store = state.store;
    store->system = &system();
    store->self = ctrl();
    auto add = [this, store](job j) {
      j.promise = make_response_promise();
      store->add(std::move(j));
    };
    set_exit_handler([this, store](caf::exit_msg& x) {
      // Like the thread: exits of reason `normal` are ignored.
      if (!x.reason)
        return;
      store->shutdown(x.reason);
      quit(x.reason);
    });
    return std::apply(
        [&](auto... requests) {
          return caf::behavior{requests..., [store](redis_link_ptr& link) {
                                 store->connected(*link);
                               }};
        },
        request_handlers(store->st, add));
  }
};

} // namespace

caf::actor
spawn_loop_store(caf::actor_system& sys, redis_store_config cfg,
                 redis_connection conn,
                 std::array<std::string, redis_scripts::script_count> shas) {
  auto loops = loop_coordinator::of(sys);
  auto store = std::make_shared<loop_store>(loops->context(0), std::move(cfg));
  store->use(std::move(conn), std::move(shas));
  return sys.spawn<loop_store_actor>(loops->unit(0), std::move(store));
}

} // namespace wsc::redis_store_impl
