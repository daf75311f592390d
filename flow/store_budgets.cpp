#include "flow/store_budgets.hpp"

#include <algorithm>

namespace wsc {

store_budgets::bucket store_budgets::full(clock::time_point now) const {
  return bucket{per_second_.burst, kept_.burst, now, 0, 0};
}

void store_budgets::refill(bucket& b, clock::time_point now) const {
  auto elapsed = std::chrono::duration<double>(now - b.refilled).count();
  b.tokens = std::min(per_second_.burst, b.tokens + elapsed * per_second_.rate);
  b.kept = std::min(kept_.burst, b.kept + elapsed * kept_.rate);
  b.refilled = now;
}

void store_budgets::take(bucket& b, double bytes) const {
  b.tokens = std::min(per_second_.burst, b.tokens - bytes);
  if (kept_.burst > 0) // else it stays 0: never in debt, full for prune
    b.kept = std::min(kept_.burst, b.kept - bytes);
}

double store_budgets::cost(size_t receivers, size_t payload_bytes,
                           size_t new_inboxes) {
  return static_cast<double>(receivers) *
             static_cast<double>(payload_bytes + 64) +
         static_cast<double>(new_inboxes) *
             static_cast<double>(new_inbox_bytes);
}

store_budgets::verdict store_budgets::check(const std::string& uid,
                                            clock::time_point now,
                                            bool publish) {
  if (uid.empty())
    return verdict::may;
  auto [i, fresh] = buckets_.try_emplace(uid, full(now));
  auto& b = i->second;
  if (!fresh)
    refill(b, now);
  if (b.tokens <= 0)
    return verdict::too_fast;
  if (kept_.burst > 0 && b.kept <= 0)
    return verdict::too_much_kept;
  if (publish && b.publishes_in_flight >= publishes_limit_)
    return verdict::too_many_publishes;
  return verdict::may;
}

void store_budgets::charge(const std::string& uid, size_t receivers,
                           size_t payload_bytes, size_t new_inboxes,
                           size_t idem_bytes) {
  if (auto i = buckets_.find(uid); i != buckets_.end())
    take(i->second, cost(receivers, payload_bytes, new_inboxes) +
                        (idem_bytes > 0 ? static_cast<double>(
                                              idem_record_bytes + idem_bytes)
                                        : 0.0));
}

void store_budgets::reserve(const std::string& uid, size_t receivers,
                            size_t payload_bytes, bool publish, bool inboxes) {
  if (auto i = buckets_.find(uid); i != buckets_.end()) {
    take(i->second,
         cost(receivers, payload_bytes, inboxes ? receivers : size_t{0}));
    ++i->second.in_flight;
    if (publish)
      ++i->second.publishes_in_flight;
  }
}

void store_budgets::release(const std::string& uid, size_t receivers,
                            size_t payload_bytes, bool publish, bool inboxes) {
  if (auto i = buckets_.find(uid); i != buckets_.end()) {
    auto& b = i->second;
    take(b, -cost(receivers, payload_bytes, inboxes ? receivers : size_t{0}));
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
  if (buckets_.size() <= 2 * connected_uids + 1024 ||
      now - last_sweep_ < std::chrono::seconds{1})
    return;
  last_sweep_ = now;
  auto kept_full = kept_.burst - std::min(kept_.burst / 64, kept_forgiven);
  for (auto i = buckets_.begin(); i != buckets_.end();) {
    if (connected(i->first)) {
      ++i;
      continue;
    }
    refill(i->second, now);
    auto& b = i->second;
    if (b.tokens >= per_second_.burst && b.kept >= kept_full &&
        b.in_flight == 0)
      i = buckets_.erase(i);
    else
      ++i;
  }
}

} // namespace wsc
