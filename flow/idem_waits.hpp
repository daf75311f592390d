#pragma once

// -- Repeats of an idem that wait for the first (no CAF) ----------------------

#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace wsc {

/// The durable sends and publishes of this node whose `idem` is being
/// stored, and the repeats of each that came meanwhile. The store answers a
/// repeat whose record is still pending `unavailable` ("send it again
/// later"); a repeat from this node instead waits here until the first has
/// its answer, then goes to the store as if it came just after (acked with
/// the first's msg_id, or stored if the first fell short and gave its
/// record back). Repeats from other nodes still meet the pending record.
class idem_waits {
public:
  /// Repeats that may wait per idem (each holds its delivery); more are
  /// refused as before.
  static constexpr size_t max_waiting = 8;

  /// How the first ended, which decides how the repeats go on.
  enum class outcome {
    recorded,   // its record holds its msg_id: repeats are acked with it
    given_back, // it stored nothing or fell short: repeats go one at a time
    failed      // no answer from the store: repeats are refused
  };

  using resume_fn = std::function<void(outcome)>;

  enum class verdict {
    first,  // nothing with this key is in flight: it is now; go, then `done`
    waits,  // one is: `wait` with what goes on once it is done
    refused // max_waiting wait already
  };

  /// A delivery with `key` (sender and idem) is about to be stored.
  verdict enter(const std::string& key);

  /// After `enter` said `waits`: `resume` runs once the first is done.
  void wait(const std::string& key, resume_fn resume);

  /// The first with `key` has its answer: what waited, to run now with its
  /// outcome (after the key is free again).
  std::vector<resume_fn> done(const std::string& key);

  /// Keys in flight (for tests).
  size_t size() const noexcept { return waiting_.size(); }

  /// The key of a delivery: the sender's length first, so uid `a:b` with
  /// idem `c` and uid `a` with idem `b:c` differ.
  static std::string key(const std::string& from, const std::string& idem);

private:
  std::unordered_map<std::string, std::vector<resume_fn>> waiting_;
};

} // namespace wsc
