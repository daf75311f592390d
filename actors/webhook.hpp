#pragma once

// -- WEBHOOK and UNREAD: node events for the application's backend ------------
//
// The WEBHOOK is an event actor like any other: subscribed to the EVENT_BUS
// for the events of `webhook-events`, it queues them (bounded by count and
// bytes), POSTs them in batches (at most `max_batch` events, or after
// `batch_delay`) with an HMAC-SHA256 signature, and retries a failed batch
// with jittered exponential back-off until its events are older than
// `webhook-retry-window`. HTTP runs on the http_client's own thread: the
// WEBHOOK never blocks a scheduler thread, and a slow backend only grows its
// queue. Each event is fired by exactly one node (README "Webhooks"), so the
// backend gets each once, plus repeats after failed POSTs (same `id`).
//
// The UNREAD checker keeps the durable copies this node stored, in due
// order, and sweeps the due ones with one timer and one store request.

#include "actors/actors.hpp"
#include "actors/event_bus.hpp"
#include "actors/metrics.hpp"
#include "actors/node_identity.hpp"
#include "http/http_client.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/typed_response_promise.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsc {

// -- pure parts (unit-tested) -------------------------------------------------

/// Events that coalesce in a backlog (see webhook_queue::push): the
/// presence of a uid (`online`/`offline`), the `register`/`logout` of a
/// connection, a uid's membership of a group (`join`/`leave`), and the
/// `unread` messages of a uid. `other` events never coalesce.
enum class webhook_kind : uint8_t {
  online,
  offline,
  registered,
  logged_out,
  joined,
  left,
  unread,
  other,
};

/// The key under which the membership events of `uid` in `group` coalesce
/// (names hold no NUL: protocol/names).
std::string membership_key(std::string_view uid, std::string_view group);

/// The key under which the `unread` events of `uid` coalesce: one per
/// conversation, the group of a group message, else its sender (empty for
/// the API), so that "unread from alice" survives bob's messages.
std::string unread_key(std::string_view uid, std::string_view from,
                       std::string_view group);

/// One event on its way to the backend: its JSON object (with `id` and
/// `name`), when it was queued, and for paired kinds the uid or connection
/// its opposite names (passed along: the JSON is not parsed again).
struct webhook_item {
  std::string json;
  int64_t since_ms = 0;
  webhook_kind kind = webhook_kind::other;
  std::string key;
};

/// Events waiting for a POST, bounded by count and bytes.
class webhook_queue {
public:
  /// What `push` did with an event.
  enum class pushed { queued, full, coalesced };

  /// Normally an event waits at most a batch delay, so `coalesce_from`
  /// queued events mean a backlog (a slow backend, or a client churning
  /// connections faster than the backend takes their events); by default
  /// half the queue: below, every event is sent (at least once).
  webhook_queue(size_t max_events, size_t max_bytes,
                size_t coalesce_from = 50'000)
      : max_events_(max_events), max_bytes_(max_bytes),
        coalesce_from_(coalesce_from) {
    // nop
  }

  /// The index views the items' keys: a copy would view the original's.
  webhook_queue(const webhook_queue&) = delete;
  webhook_queue& operator=(const webhook_queue&) = delete;
  webhook_queue(webhook_queue&&) = default;
  webhook_queue& operator=(webhook_queue&&) = default;

  /// Queues an event; `full` (and nothing queued) when the queue is full.
  /// In a backlog (`coalesce_from` queued) a uid's `online` or `offline`
  /// first removes what is queued of the uid's presence (the backend gets
  /// its latest state), a `join` or `leave` likewise what is queued of that
  /// membership, an `unread` what is queued of its uid's unread messages
  /// of the same conversation (the backend's cue to notify the uid: the
  /// newest message stands for the others), and a `logout` whose `register` is
  /// still queued removes it and is not queued itself (`coalesced`): one client
  /// churning connections or memberships, or sending durable messages faster
  /// than the backend takes their `unread`s, cannot fill the queue and push
  /// others' events out. Below the threshold every event is kept. `removed` (if
  /// given) is set to the number of queued events removed.
  pushed push(webhook_item item, size_t* removed = nullptr);

  /// Takes the oldest `n` events (fewer if fewer are queued).
  std::vector<webhook_item> take(size_t n);

  /// Puts back a batch whose POST failed at `now_ms`, in front of what came
  /// since; events queued more than `window_ms` before `now_ms` are dropped
  /// instead. Returns how many were dropped. Events given back never
  /// coalesce: the backend may have seen them already.
  size_t give_back(std::vector<webhook_item> batch, int64_t now_ms,
                   int64_t window_ms);

  size_t size() const { return items_.size(); }

  size_t bytes() const { return bytes_; }

  bool empty() const { return items_.empty(); }

private:
  /// A list: coalescing removes from the middle in O(1).
  using item_list = std::list<webhook_item>;

  /// What an event counts against `max_bytes`.
  static size_t cost(const webhook_item& item) {
    return item.json.size() + item.key.size();
  }

  /// The events of `kind`, by key (kind must not be `other`).
  std::unordered_map<std::string_view, item_list::iterator>&
  index_of(webhook_kind kind) {
    return index_[static_cast<size_t>(kind)];
  }

  /// Removes the queued event of `kind` indexed for `key`, if any.
  void remove_indexed(webhook_kind kind, const std::string& key);

  /// Forgets `pos` in the index (if it is the one indexed for its key).
  void unindex(item_list::iterator pos);

  size_t max_events_;
  size_t max_bytes_;
  size_t coalesce_from_;
  size_t bytes_ = 0;
  item_list items_;
  /// The newest queued event of each paired kind for each key; the keys
  /// view the items' own `key` (list nodes do not move).
  std::array<std::unordered_map<std::string_view, item_list::iterator>,
             static_cast<size_t>(webhook_kind::other)>
      index_;
};

/// Decides when to log a warning about something that may happen at any
/// rate: at most one line per `interval`, carrying the count since the last
/// line (found by a probe review: one line per dropped webhook event wrote
/// 10 MB of log in 20 s).
class log_throttle {
public:
  using time_point = std::chrono::steady_clock::time_point;

  explicit log_throttle(
      std::chrono::steady_clock::duration interval = std::chrono::seconds{1})
      : interval_(interval) {
    // nop
  }

  /// Counts `n` more occurrences.
  void add(uint64_t n) { pending_ += n; }

  /// The count to log at `now` (then reset), or 0: nothing counted or the
  /// last line is less than `interval` old.
  uint64_t due(time_point now);

  uint64_t pending() const { return pending_; }

private:
  std::chrono::steady_clock::duration interval_;
  uint64_t pending_ = 0;
  std::optional<time_point> last_line_;
};

/// The body of a POST: `{"time_ms":T,"events":[...]}`.
std::string webhook_body(const std::vector<webhook_item>& batch,
                         int64_t time_ms);

/// The `X-Wscluster-Signature` value: `sha256=<hex HMAC-SHA256 of body>`.
std::string webhook_signature(std::string_view secret, std::string_view body);

/// The wait before attempt `failures` + 1 after `failures` (>= 1) failed
/// POSTs: base * 2^(failures - 1), at most `cap`, scaled into [1/2, 1] by
/// `jitter` (in [0, 1]).
std::chrono::milliseconds
webhook_backoff(std::chrono::milliseconds base, uint32_t failures,
                double jitter,
                std::chrono::milliseconds cap = std::chrono::seconds(10));

/// The event_mask bits to subscribe to for `webhook-events` names.
uint32_t webhook_mask(const std::vector<std::string>& names);

// -- WEBHOOK ------------------------------------------------------------------

/// The settings of the WEBHOOK (`webhook-*`).
struct webhook_config {
  std::string url;
  /// Signs each POST (HMAC-SHA256); empty: unsigned.
  std::string secret;
  /// The names of the events POSTed.
  std::vector<std::string> events;
  /// CA file for an https URL (empty: the system's).
  std::string ca;
  std::chrono::milliseconds retry_base{500};
  std::chrono::milliseconds retry_window{60'000};
  /// `webhook-coalesce-from` (webhook_queue).
  size_t coalesce_from = 50'000;
};

/// The state of the WEBHOOK actor.
struct webhook_state {
  static inline const char* name = "webhook";

  /// Most events per POST, and how long the first event of a batch waits
  /// for more.
  static constexpr size_t max_batch = 100;
  static constexpr std::chrono::milliseconds batch_delay{100};
  /// Deadline of one POST (connect, TLS, write and read).
  static constexpr std::chrono::milliseconds post_timeout{10'000};

  /// Event ids start with this node's id and incarnation.
  node_identity who;
  std::shared_ptr<node_metrics> metrics;
  std::shared_ptr<http_client> client;
  http_url url;
  std::string secret;
  std::vector<std::string> events;
  std::chrono::milliseconds retry_base{500};
  int64_t retry_window_ms = 60'000;
  static constexpr size_t max_queued_events = 100'000;
  static constexpr size_t max_queued_bytes = 64u << 20;
  webhook_queue queue{max_queued_events, max_queued_bytes};
  /// The batch being POSTed (or waiting for its retry).
  std::vector<webhook_item> in_flight;
  /// Tells the answer of the current POST from stale ones.
  uint64_t attempt = 0;
  /// Failed POSTs in a row.
  uint32_t failures = 0;
  bool posting = false;
  /// The batch delay's flush is scheduled.
  bool waiting = false;
  /// Waiting for the end of a back-off (a `tick`).
  bool backing_off = false;
  uint64_t next_id = 0;
  /// Drops not logged yet, and why the last one was dropped.
  log_throttle drop_log;
  std::string drop_reason;
  /// A `check` will log what the throttle holds back.
  bool drop_log_due = false;
  std::mt19937_64 rng{std::random_device{}()};
  /// Graceful stop: answered once the queue is empty or at the deadline.
  std::vector<caf::typed_response_promise<atom::ok>> drains;
  int64_t drain_deadline_ms = 0;
  int64_t drain_started_ms = 0;

  webhook_actor::stateful_pointer<webhook_state> self = nullptr;

  /// Queues an event named `name` with the fields of `fields` (a JSON
  /// object's members, written after `id` and `name`); `kind` and `key`
  /// for an event with an opposite (see webhook_queue::push).
  void add(const char* name, std::string fields,
           webhook_kind kind = webhook_kind::other, std::string key = {});

  /// POSTs the next batch, or schedules it.
  void pump();

  /// Sends one batch.
  void post();

  /// The answer of a POST.
  void posted(uint64_t id, bool ok, const std::string& error);

  /// Answers pending drains if the queue is empty or the deadline passed.
  void check_drain();

  /// Counts dropped events and logs them (throttled).
  void dropped(size_t n, std::string why);

  /// Logs the drops not logged yet once a line is due, else schedules a
  /// `check` for when it is (drops may stop while no POST ends).
  void log_drops();
};

/// Spawn arguments: the settings, the node, its metrics and the HTTP client.
webhook_actor::behavior_type
webhook(webhook_actor::stateful_pointer<webhook_state> self, webhook_config cfg,
        node_identity who, std::shared_ptr<node_metrics> metrics,
        std::shared_ptr<http_client> client);

/// Checks the webhook settings, starts the HTTP client, spawns the WEBHOOK
/// and subscribes it to the node's EVENT_BUS.
caf::expected<webhook_actor>
spawn_webhook(caf::actor_system& sys, const webhook_config& cfg,
              const node_identity& who, std::shared_ptr<node_metrics> metrics,
              const event_bus_actor& events);

// -- UNREAD -------------------------------------------------------------------

/// The settings of the UNREAD checker.
struct unread_config {
  /// `unread-after`: how long a stored copy may stay unread.
  std::chrono::milliseconds after{30'000};
  std::chrono::milliseconds request_timeout{5000};
  /// Most copies waiting for their check, in count and in bytes (what a
  /// copy holds in memory, see unread_state::cost); more are not checked
  /// (logged): the checker never holds more than ~this.
  size_t max_pending = 1'000'000;
  size_t max_pending_bytes = size_t{64} << 20;
};

/// The state of the UNREAD checker.
struct unread_state {
  static inline const char* name = "unread";

  /// Most copies per store request.
  static constexpr size_t max_per_check = 1000;

  struct pending {
    int64_t due_ms = 0;
    unread_watch watch;
    size_t bytes = 0;
  };

  /// What a watch holds in memory: its strings plus the per-copy and
  /// per-watch overheads of the containers.
  static size_t cost(const unread_watch& w);

  state_store_actor store;
  event_bus_actor events;
  subscribed_events_ptr subscribed;
  unread_config cfg;
  /// Ordered by due time (every copy waits the same `unread-after`).
  std::deque<pending> queue;
  size_t copies = 0;
  /// The cost of the queued watches.
  size_t bytes = 0;
  bool ticking = false;
  bool checking = false;
  uint64_t skipped = 0;

  unread_actor::stateful_pointer<unread_state> self = nullptr;

  /// Arms the one timer for the first due entry.
  void arm();

  /// Checks the due copies in one store request.
  void sweep();
};

/// Spawn arguments: the settings, the state store holding the cursors, and
/// the EVENT_BUS with its subscribed events (no UNREAD subscriber: nothing
/// is checked).
unread_actor::behavior_type
unread_checker(unread_actor::stateful_pointer<unread_state> self,
               unread_config cfg, state_store_actor store,
               event_bus_actor events, subscribed_events_ptr subscribed);

} // namespace wsc
