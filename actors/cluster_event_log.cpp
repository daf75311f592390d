#include "actors/cluster_event_log.hpp"

#include "protocol/frames.hpp"

namespace wsc {

void cluster_event_log::record(std::string event, std::string node,
                               std::string reason) {
  std::lock_guard guard{mtx_};
  entries_.push_back(entry{frames::now_ms(), std::move(event), std::move(node),
                           std::move(reason)});
  if (entries_.size() > capacity)
    entries_.pop_front();
}

std::vector<cluster_event_log::entry> cluster_event_log::snapshot() const {
  std::lock_guard guard{mtx_};
  return {entries_.begin(), entries_.end()};
}

} // namespace wsc
