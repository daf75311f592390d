#pragma once

// -- One round trip of the Redis STATE_STORE, without its I/O -----------------
//
// Both executors of the STORE (redis_store.cpp's thread, redis_store_loop.cpp's
// event loop) send the commands of a stage in one pipeline and read their
// replies; they differ only in how the bytes move. What goes out and what
// comes back means is decided here, synchronously:
// - One WAIT after the last command confirms every write before it on the
//   connection (with durable-replicas, when a command is marked `wait`). Its
//   count goes to each `wait` command with a reply, -1 to the others; a WAIT
//   without an answer counts 0 (the commands ran, on no replica known).
// - NOSCRIPT (Redis lost our scripts: SCRIPT FLUSH, a restart behind a
//   proxy): once the executor loaded the scripts again, only those commands
//   go again (`retry`), with a WAIT of their own when one is `wait` (a
//   refused EVALSHA wrote nothing, whatever the first WAIT said), and their
//   replies and counts replace the first ones (`merge`).
// The interval between connect attempts is decided here too.

#include "adapters/redis_append_batch.hpp"
#include "adapters/redis_connection.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

namespace wsc::redis_store_impl {

// -- round trips --------------------------------------------------------------

/// Writes the argv of a command into its second argument: views into the
/// command and into strings that outlive the round trip (the SHAs).
using argv_fn =
    std::function<void(const redis_command&, std::vector<std::string_view>&)>;

/// The WAIT that follows durable writes: how many replicas must have them and
/// how long Redis may wait for them. Replicas 0: no WAIT (durable-replicas=0,
/// or a Redis Cluster, whose client waits on each master itself).
struct wait_settings {
  int64_t replicas = 0;
  std::chrono::milliseconds timeout{0};
};

/// The commands of one round trip: what to send and what the replies mean.
class redis_round_trip {
public:
  using reply_list = std::vector<caf::expected<redis_reply_ptr>>;

  redis_round_trip(std::vector<const redis_command*> commands,
                   wait_settings wait, argv_fn argv_of);

  // -- what to send -----------------------------------------------------------

  const std::vector<const redis_command*>& commands() const noexcept {
    return commands_;
  }

  /// One argv per command, then the WAIT if `waits()`. They view the
  /// commands and what `argv_of` pointed to: send them before those change.
  const std::vector<std::vector<std::string_view>>& argvs() const noexcept {
    return argvs_;
  }

  /// Whether a WAIT follows the commands: some command is marked `wait`
  /// and the settings ask for replicas.
  bool waits() const noexcept { return wait_ != nullptr; }

  // -- what came back ---------------------------------------------------------

  /// Takes one reply per argv, in order: an error where none came (the
  /// connection broke; the commands before it ran).
  void take(reply_list got);

  /// Takes one reply and one replica count per command from a sender that
  /// confirms the writes itself (the Redis Cluster client).
  void take(reply_list got, std::vector<int64_t> replicas);

  /// Nothing was sent (Redis unreachable): every command fails with `why`.
  void fail(const caf::error& why);

  /// One per command (none before `take` or `fail`).
  reply_list& replies() noexcept { return replies_; }
  const reply_list& replies() const noexcept { return replies_; }

  /// One per command: the replicas a WAIT confirmed of it (marked `wait`,
  /// with a WAIT, with a reply; 0 when the WAIT got no answer), else -1.
  std::vector<int64_t>& replicas() noexcept { return replicas_; }
  const std::vector<int64_t>& replicas() const noexcept { return replicas_; }

  /// The indices of the commands whose reply is NOSCRIPT.
  const std::vector<size_t>& noscript() const noexcept { return noscript_; }

  // -- after NOSCRIPT ---------------------------------------------------------

  /// The round trip that sends the NOSCRIPT commands again, once the
  /// scripts are loaded (with the same WAIT settings).
  redis_round_trip retry() const;

  /// Takes the replies and counts of `retry()` for the NOSCRIPT commands.
  void merge(redis_round_trip&& retry);

  /// The scripts could not be loaded again: the NOSCRIPT commands fail with
  /// `why` (they ran nowhere).
  void refuse(const caf::error& why);

private:
  /// Fills `noscript_` from `replies_`.
  void find_noscript();

  std::vector<const redis_command*> commands_;
  wait_settings settings_;
  argv_fn argv_of_;
  /// On the heap: `argvs_` views its strings, and a move keeps them put.
  std::unique_ptr<const redis_wait> wait_;
  std::vector<std::vector<std::string_view>> argvs_;
  reply_list replies_;
  std::vector<int64_t> replicas_;
  std::vector<size_t> noscript_;
};

// -- reconnecting -------------------------------------------------------------

/// The interval before the next connect attempt after one that failed in
/// `took`, the last interval being `current`: an attempt that took `base`
/// or more (it timed out: a hung or black-holed server) doubles the
/// interval, up to `max`, so that such attempts block the STORE a small part
/// of the time; a quick failure (a refused connect) goes back to `base`.
std::chrono::milliseconds next_retry_interval(
    std::chrono::milliseconds current, std::chrono::steady_clock::duration took,
    std::chrono::milliseconds base, std::chrono::milliseconds max);

} // namespace wsc::redis_store_impl
