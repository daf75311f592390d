#pragma once

#include "net/websocket_session.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace wsc::net {

/// The WebSocket sessions of a server whose event loops outlive it
/// (`scheduler-policy=loop`: the loops belong to the actor scheduler), so
/// that stopping the server can close every socket still open. Otherwise
/// the loops end with the server and the sessions with them.
class session_list {
public:
  void add(const std::shared_ptr<websocket_session>& session) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (sessions_.size() >= 2 * live_after_prune_ + 64) {
      // Amortised: drop the sessions that ended since the last prune.
      sessions_.erase(std::remove_if(sessions_.begin(), sessions_.end(),
                                     [](auto& weak) { return weak.expired(); }),
                      sessions_.end());
      live_after_prune_ = sessions_.size();
    }
    sessions_.push_back(session);
  }

  /// Closes every session still open (the close is posted to each one's
  /// executor; its close deadline bounds how long it takes).
  void close_all(uint16_t code, const std::string& reason) {
    std::vector<std::weak_ptr<websocket_session>> sessions;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      sessions.swap(sessions_);
      live_after_prune_ = 0;
    }
    for (auto& weak : sessions)
      if (auto session = weak.lock())
        session->close(code, reason);
  }

private:
  std::mutex mtx_;
  std::vector<std::weak_ptr<websocket_session>> sessions_;
  size_t live_after_prune_ = 0;
};

} // namespace wsc::net
