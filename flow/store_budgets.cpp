#include "flow/store_budgets.hpp"

#include <algorithm>

namespace wsc {

void store_budgets::refill(bucket& b, clock::time_point now) const {
  std::chrono::duration<double> elapsed = now - b.refilled;
  b.tokens = std::min(burst_, b.tokens + elapsed.count() * rate_);
  b.refilled = now;
}

bool store_budgets::may_store(const std::string& uid, clock::time_point now) {
  if (uid.empty())
    return true;
  auto [i, fresh] = buckets_.try_emplace(uid, bucket{burst_, now});
  if (!fresh)
    refill(i->second, now);
  return i->second.tokens > 0;
}

void store_budgets::charge(const std::string& uid, size_t receivers,
                           size_t payload_bytes, size_t new_inboxes) {
  if (auto i = buckets_.find(uid); i != buckets_.end())
    i->second.tokens -=
        static_cast<double>(receivers) *
            static_cast<double>(payload_bytes + 64) +
        static_cast<double>(new_inboxes) * static_cast<double>(new_inbox_bytes);
}

void store_budgets::prune(
    size_t connected_uids,
    const std::function<bool(const std::string&)>& connected,
    clock::time_point now) {
  if (buckets_.size() <= 2 * connected_uids + 1024)
    return;
  for (auto i = buckets_.begin(); i != buckets_.end();) {
    if (connected(i->first)) {
      ++i;
      continue;
    }
    refill(i->second, now);
    if (i->second.tokens >= burst_)
      i = buckets_.erase(i);
    else
      ++i;
  }
}

} // namespace wsc
