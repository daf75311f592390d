#pragma once

// -- The order of one connection's frames (no CAF)
// -----------------------------
//
// A connection gets its welcome and, for a device, the replay of its inbox
// first; live frames that arrive meanwhile wait. A device's durable frames
// then go out in inbox seq order, each once: a frame after a gap waits
// while the gap is read from the inbox. The REGISTRY owns one frame_order
// per connection and does the writing and the store requests it asks for.

#include "protocol/messages.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

namespace wsc {

class frame_order {
public:
  /// The most frames, and their bytes, that may wait at once (beyond, live
  /// frames are dropped; durable ones stay in the inbox).
  struct hold_limit {
    hold_limit(size_t max_frames,
               uint64_t max_bytes = std::numeric_limits<uint64_t>::max())
        : frames(max_frames), bytes(max_bytes) {
      // nop
    }
    size_t frames;
    uint64_t bytes;
  };

  /// What to do with a live frame.
  enum class step {
    /// Write it now (counted against the send queue limit).
    write,
    /// Nothing: written already, or excluded (a null frame).
    skip,
    /// It waits until the connection opens or a gap is filled.
    hold,
    /// It waits behind a gap: read the inbox after `last_seq()` and hand
    /// each page to `on_catch_up_page`.
    catch_up,
  };

  /// `device`: the connection's durable frames are numbered (it resumes).
  explicit frame_order(bool device) : device_(device) {
    // nop
  }

  /// Decides about a live frame with inbox `seq` (0: not durable) of the
  /// message `msg_id`; a null frame is an excluded durable copy that only
  /// advances the numbering. At most `hold_limit` frames wait; more are
  /// dropped (durable ones stay in the inbox).
  step on_live(uint64_t seq, const frame_ptr& frame, hold_limit limit,
               std::string_view msg_id = {});

  /// Whether a message read from the inbox (replay or gap) is new to the
  /// connection; a new one counts as written.
  bool take(const stored_message& msg);

  /// A page of a gap arrived (null: the store failed). Its messages went
  /// through `take` already. True: read the next page; false: the gap is
  /// closed and the held frames are due (`release_held`).
  bool on_catch_up_page(const inbox_replay* page);

  /// The held frames to write now, durable ones in seq order and without
  /// those written already; clears them. If the uid's inbox started over
  /// at seq 1 while they waited (see `restarts`), the frames from its new
  /// seq 1 on follow the others and are numbered anew (one restart; a
  /// second one is left to the next resume).
  std::vector<frame_ptr> release_held();

  // -- the replay of a device
  // --------------------------------------------------

  /// The first page of the replay arrived (after the welcome).
  void begin_replay(inbox_replay& first);

  /// The next message of the current page that is new to the connection
  /// (counted as written), or null when the page is written.
  const stored_message* next_replayed();

  /// Whether the store has more of the replay (read it after
  /// `replay_after()` once the page is written).
  bool replay_more() const { return replay_more_; }

  uint64_t replay_after() const { return replay_after_; }

  /// Where the replay began (the first page's cursor): what its welcome
  /// already reported as too old, if anything.
  uint64_t replay_started_after() const { return replay_start_; }

  /// Whether every message of the current page went through
  /// `next_replayed` (then read the next page, or open).
  bool replay_page_written() const {
    return replay_head_ >= replay_page_.size();
  }

  /// The next page of the replay arrived.
  void on_replay_page(inbox_replay& page);

  /// The replay ended: the live frames flow from now on, after the held
  /// ones (returned, see `release_held`). `complete`: every page was
  /// written, so the connection is at the uid's last seq of the replay.
  std::vector<frame_ptr> open(bool complete);

  bool is_open() const { return open_; }

  uint64_t last_seq() const { return last_seq_; }

  /// Pages in a row that came back empty but `more` before a replay gives up
  /// (the store deleted malformed entries: asking again moves on).
  static constexpr uint32_t max_empty_pages = 4;

private:
  struct held_frame {
    uint64_t seq;
    /// msg_id_hash of a seq-1 frame (see restarts).
    uint64_t id_hash;
    frame_ptr frame;
  };
  using held_list = std::vector<held_frame>;

  static uint64_t msg_id_hash(std::string_view msg_id);

  /// Whether a durable frame `seq` of the message whose id hashes to
  /// `id_hash` starts a new numbering: the uid's inbox started over at seq
  /// 1 (its new life found no seq hint: a failover lost the inbox with it,
  /// the hint was evicted or outlived, or a node without hints started it).
  /// A new life that continues past the earlier one's seqs is a gap like
  /// any other (the catch-up takes it: only_new_life_ahead). Only seq 1
  /// can restart; it is no restart if it is the seq 1 this connection
  /// knows (a late live copy of a message the replay wrote), nor while
  /// nothing past it was written (seq 2 may overtake seq 1 from another
  /// node).
  bool restarts(uint64_t seq, uint64_t id_hash) const;

  /// Counts durable `seq` as written (the message's id hash for seq 1).
  void advance(uint64_t seq, uint64_t id_hash);

  void hold(uint64_t seq, uint64_t id_hash, const frame_ptr& frame,
            hold_limit limit);

  /// Appends the frames of [first, last) to `out` in seq order, durable
  /// ones only if past `last_seq_` (which they advance).
  void release_in_order(held_list::iterator first, held_list::iterator last,
                        std::vector<frame_ptr>& out);

  void set_page(std::vector<stored_message> page);

  bool device_;
  /// False until `welcome` (and, for a device, its replay) went out.
  bool open_ = false;
  /// A gap is being filled from the inbox: new frames wait in `held_`.
  bool catching_up_ = false;
  /// The highest inbox seq written (devices only).
  uint64_t last_seq_ = 0;
  /// The id hash of the message written as seq 1 (0: none seen).
  uint64_t first_id_hash_ = 0;
  /// Live frames that arrived while waiting, with their inbox seq, and
  /// their bytes.
  held_list held_;
  uint64_t held_bytes_ = 0;
  /// The replay's page read from the store; written up to `replay_head_`
  /// (a vector: an empty std::deque holds ~500 bytes, on every connection).
  std::vector<stored_message> replay_page_;
  size_t replay_head_ = 0;
  bool replay_more_ = false;
  uint64_t replay_after_ = 0;
  uint64_t replay_start_ = 0;
  uint32_t replay_empty_pages_ = 0;
  /// The uid's last seq when the replay began (and as pages told since).
  uint64_t replay_last_ = 0;
};

} // namespace wsc
