#include "flow/store_budgets.hpp"

#include <algorithm>

namespace wsc {

void store_budgets::refill(bucket& b, clock::time_point now) const {
  std::chrono::duration<double> elapsed = now - b.refilled;
  b.tokens = std::min(burst_, b.tokens + elapsed.count() * rate_);
  b.refilled = now;
}

double store_budgets::cost(size_t receivers, size_t payload_bytes,
                           size_t new_inboxes) {
  return static_cast<double>(receivers) *
             static_cast<double>(payload_bytes + 64) +
         static_cast<double>(new_inboxes) *
             static_cast<double>(new_inbox_bytes);
}

bool store_budgets::may_store(const std::string& uid, clock::time_point now,
                              bool publish) {
  if (uid.empty())
    return true;
  auto [i, fresh] = buckets_.try_emplace(uid, bucket{burst_, now, 0, 0});
  if (!fresh)
    refill(i->second, now);
  return i->second.tokens > 0 &&
         (!publish || i->second.publishes_in_flight < max_publishes_in_flight);
}

void store_budgets::charge(const std::string& uid, size_t receivers,
                           size_t payload_bytes, size_t new_inboxes,
                           size_t idem_bytes) {
  if (auto i = buckets_.find(uid); i != buckets_.end())
    i->second.tokens -=
        cost(receivers, payload_bytes, new_inboxes) +
        (idem_bytes > 0 ? static_cast<double>(idem_record_bytes + idem_bytes)
                        : 0.0);
}

void store_budgets::reserve(const std::string& uid, size_t receivers,
                            size_t payload_bytes, bool publish) {
  if (auto i = buckets_.find(uid); i != buckets_.end()) {
    i->second.tokens -= cost(receivers, payload_bytes, receivers);
    ++i->second.in_flight;
    if (publish)
      ++i->second.publishes_in_flight;
  }
}

void store_budgets::release(const std::string& uid, size_t receivers,
                            size_t payload_bytes, bool publish) {
  if (auto i = buckets_.find(uid); i != buckets_.end()) {
    auto& b = i->second;
    b.tokens =
        std::min(burst_, b.tokens + cost(receivers, payload_bytes, receivers));
    if (b.in_flight > 0)
      --b.in_flight;
    if (publish && b.publishes_in_flight > 0)
      --b.publishes_in_flight;
  }
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
    if (i->second.tokens >= burst_ && i->second.in_flight == 0)
      i = buckets_.erase(i);
    else
      ++i;
  }
}

} // namespace wsc
