// The stages of a batch, shared by both executors of the Redis STATE_STORE
// (the thread in redis_store.cpp, the event loop in redis_store_loop.cpp):
// the requests queued, stage k of every job collected into one round trip,
// the replies handed back to their jobs, each job answered once it is done.

#include "adapters/redis_append_batch.hpp"
#include "adapters/redis_store_state.hpp"
#include "protocol/error.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>

namespace wsc::redis_store_impl {

void redis_store_state::add(job j) {
  if (j.commands.empty() && j.error) { // refused before any round trip
    j.promise.deliver(std::move(j.error));
    return;
  }
  batch.push_back(std::move(j));
}

void redis_store_state::fail_batch() {
  // Even requests that need no command fail: nothing works while down.
  auto err = unavailable();
  for (auto& j : batch)
    if (!j.when_down.empty())
      j.promise.deliver(std::move(j.when_down));
    else
      j.promise.deliver(err);
  batch.clear();
}

void redis_store_state::begin_flight(flight& f) {
  // At most max-batch jobs (the thread never queues more; on the loop the
  // batch grows while one is in flight).
  auto n = std::min(batch.size(), cfg.max_batch);
  f.jobs.clear();
  std::move(batch.begin(), batch.begin() + static_cast<ptrdiff_t>(n),
            std::back_inserter(f.jobs));
  batch.erase(batch.begin(), batch.begin() + static_cast<ptrdiff_t>(n));
  f.active.clear();
  for (auto& j : f.jobs)
    f.active.push_back(&j);
  f.stage = 0;
  f.followups.clear();
}

void redis_store_state::stage_commands(flight& f) {
  // Stages in lockstep: stage k of every job shares one round trip (per
  // master), in batch order.
  std::vector<redis_command*> staged;
  for (auto j : f.active)
    for (auto& cmd : j->commands)
      staged.push_back(&cmd);
  if (is_cluster()) {
    f.out.clear();
    f.out.commands.assign(staged.begin(), staged.end());
  } else {
    // A batch holds no more uids than one append call (uids-per-call):
    // Redis serves others between calls.
    append_batch_limits limits;
    limits.max_uids = cfg.uids_per_call;
    pack_appends(staged, limits, f.out);
  }
}

void redis_store_state::end_stage(
    flight& f, std::vector<caf::expected<redis_reply_ptr>>& replies,
    std::vector<int64_t>& replicas) {
  unpack_replies(f.out, replies, replicas);
  size_t next = 0;
  std::vector<job*> still;
  for (auto j : f.active) {
    j->replies.clear();
    j->replicas.clear();
    j->stage_error = caf::none;
    for (size_t i = 0; i < j->commands.size(); ++i, ++next) {
      j->replicas.push_back(replicas[next]);
      auto& r = replies[next];
      if (!r) {
        if (!j->stage_error)
          j->stage_error = r.error();
        j->replies.emplace_back();
      } else {
        if (!j->stage_error && *r && (*r)->type == REDIS_REPLY_ERROR)
          j->stage_error = redis_reply_error(**r);
        j->replies.push_back(std::move(*r));
      }
    }
    j->commands.clear();
    std::optional<caf::expected<caf::message>> answer;
    if (f.stage >= 16)
      answer = caf::expected<caf::message>{
          make_error(ec::internal, "state store: too many stages")};
    else
      answer = j->step(*j);
    if (answer) {
      if (!*answer && !j->when_down.empty() &&
          answer->error() == ec::unavailable)
        j->promise.deliver(std::move(j->when_down));
      else if (*answer)
        j->promise.deliver(std::move(**answer));
      else
        j->promise.deliver(std::move(answer->error()));
      std::move(j->followups.begin(), j->followups.end(),
                std::back_inserter(f.followups));
    } else {
      still.push_back(j);
    }
  }
  f.active.swap(still);
  ++f.stage;
}

} // namespace wsc::redis_store_impl
