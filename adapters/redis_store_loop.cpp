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

#include "actors/error.hpp"
#include "adapters/redis_pipeline.hpp"
#include "adapters/redis_store_state.hpp"
#include "loop/loop_coordinator.hpp"
#include "loop/loop_pinned.hpp"
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
  /// Whether the attempt took at least a retry interval (a hung server).
  bool slow = false;
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
  link->slow = steady_clock::now() - started >= cfg.retry_interval;
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
      // Attempts that time out (a hung server) stretch the interval.
      st.retry_interval =
          link.slow
              ? std::min(std::max(st.retry_interval * 2, st.cfg.retry_interval),
                         st.cfg.max_retry_interval)
              : st.cfg.retry_interval;
      return lost(link.error); // and try again after the interval
    }
    use(std::move(link.conn), std::move(link.shas));
    if (!up())
      return;
    if (st.down_reason)
      log::info("Redis at {} reachable again", st.cfg.url.redacted());
    st.down_reason = caf::none;
    st.retry_interval = st.cfg.retry_interval;
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

  using reply_list = std::vector<caf::expected<redis_reply_ptr>>;

  /// Runs `cmds` in one round trip (a second one after NOSCRIPT) and calls
  /// `done` with a reply per command and what WAIT confirmed of each (-1: no
  /// WAIT), as redis_store_state::run does with a blocking connection.
  template<class F>
  void round_trip(const std::vector<const redis_command*>& cmds, F done) {
    auto replies = std::make_shared<reply_list>();
    auto acked = std::make_shared<std::vector<int64_t>>(cmds.size(), -1);
    // Every handler keeps the STORE alive until the replies came.
    auto finish = [this, keep = shared_from_this(), cmds, replies, acked,
                   done]() mutable {
      if (st.cfg.durable_replicas > 0)
        st.check_replicas(cmds, *replies, *acked);
      done(*replies, *acked);
    };
    if (cmds.empty()) // a stage in which every job waits
      return finish();
    std::vector<std::vector<std::string_view>> argvs(cmds.size());
    for (size_t i = 0; i < cmds.size(); ++i)
      st.argv_of(*cmds[i], argvs[i]);
    // One WAIT after the last command confirms every write before it.
    auto wait =
        st.cfg.durable_replicas > 0 &&
        std::any_of(cmds.begin(), cmds.end(), [](auto* c) { return c->wait; });
    redis_wait wait_cmd{st.cfg.durable_replicas,
                        st.cfg.durable_replicas_timeout};
    if (wait)
      argvs.push_back(wait_cmd.argv());
    auto sent = up() && pipe_->send(argvs, [this, cmds, replies, acked, wait,
                                            finish](reply_list got) mutable {
      if (wait) {
        auto n = take_wait(got);
        for (size_t i = 0; i < cmds.size(); ++i)
          if (cmds[i]->wait && got[i])
            (*acked)[i] = n;
      }
      *replies = std::move(got);
      retry_noscript(cmds, replies, acked, std::move(finish));
    });
    if (!sent) {
      replies->clear();
      for (size_t i = 0; i < cmds.size(); ++i)
        replies->emplace_back(st.unavailable());
      finish();
    }
  }

  /// Pops the reply of the WAIT after the commands: how many replicas have
  /// them (0 without an answer: the commands ran, on no replica known).
  static int64_t take_wait(reply_list& got) {
    int64_t n = 0;
    if (got.back() && *got.back())
      n = parse_wait_reply(**got.back()).value_or(0);
    got.pop_back();
    return n;
  }

  /// NOSCRIPT (Redis lost our scripts, e.g. SCRIPT FLUSH or a restart behind
  /// a proxy): loads them again and retries those commands, in one round
  /// trip (Redis runs the loads first).
  template<class F>
  void retry_noscript(const std::vector<const redis_command*>& cmds,
                      std::shared_ptr<reply_list> replies,
                      std::shared_ptr<std::vector<int64_t>> acked, F finish) {
    std::vector<size_t> noscript;
    for (size_t i = 0; i < replies->size(); ++i)
      if ((*replies)[i] && *(*replies)[i] && is_noscript(**(*replies)[i]))
        noscript.push_back(i);
    if (noscript.empty() || !up())
      return finish();
    log::warn("Redis lost our Lua scripts (NOSCRIPT): reloading them");
    std::vector<std::string> sources;
    std::vector<std::vector<std::string_view>> argvs;
    for (size_t i = 0; i < redis_scripts::script_count; ++i)
      sources.push_back(
          redis_scripts::source(static_cast<script>(i), st.cfg.session_groups));
    for (auto& src : sources)
      argvs.push_back({"SCRIPT", "LOAD", src});
    // A refused EVALSHA wrote nothing, whatever the WAIT after it said: the
    // retried writes count on the WAIT after the retry.
    bool wait = false;
    for (auto i : noscript) {
      argvs.emplace_back();
      st.argv_of(*cmds[i], argvs.back());
      if (cmds[i]->wait && (*acked)[i] >= 0) {
        (*acked)[i] = 0;
        wait = true;
      }
    }
    redis_wait wait_cmd{st.cfg.durable_replicas,
                        st.cfg.durable_replicas_timeout};
    if (wait)
      argvs.push_back(wait_cmd.argv());
    auto sent = pipe_->send(argvs, [this, cmds, replies, acked, noscript, wait,
                                    finish](reply_list got) mutable {
      if (wait) {
        auto n = take_wait(got);
        for (size_t j = 0; j < noscript.size(); ++j)
          if (cmds[noscript[j]]->wait && (*acked)[noscript[j]] >= 0)
            (*acked)[noscript[j]] = n;
      }
      auto k = redis_scripts::script_count;
      caf::error refused;
      for (size_t i = 0; i < k && !refused; ++i) {
        if (!got[i])
          refused = got[i].error();
        else if ((*got[i])->type == REDIS_REPLY_ERROR)
          refused = redis_reply_error(**got[i]);
      }
      for (size_t j = 0; j < noscript.size(); ++j)
        (*replies)[noscript[j]] = refused
                                      ? caf::expected<redis_reply_ptr>{refused}
                                      : std::move(got[k + j]);
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
