#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace wsc {

/// The most recent DISCOVER and SHUTDOWN events of the cluster as this node
/// saw them, for the dashboard (GET /api/events). Written by DISCOVERY, read
/// by the HTTP_API: every call may come from any thread.
class cluster_event_log {
public:
  struct entry {
    int64_t ts = 0;
    std::string event;
    std::string node;
    std::string reason;
  };

  void record(std::string event, std::string node, std::string reason = {});

  std::vector<entry> snapshot() const;

private:
  static constexpr size_t capacity = 100;
  mutable std::mutex mtx_;
  std::deque<entry> entries_;
};

} // namespace wsc
