#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace wsc {

/// Who this node is in the cluster: its id, and the incarnation drawn at
/// each start (tells this run's bindings from a predecessor's).
struct node_identity {
  std::string id;
  uint64_t incarnation = 0;

  /// A fresh incarnation, and a random id unless `configured` names one.
  static node_identity draw(const std::string& configured);
};

/// Connection ids unique across the cluster and across restarts: node id,
/// incarnation, sequence number. `next` may be called from any thread.
class conn_id_source {
public:
  explicit conn_id_source(node_identity who) : who_(std::move(who)) {
    // nop
  }

  std::string next();

  const node_identity& who() const { return who_; }

private:
  node_identity who_;
  std::atomic<uint64_t> seq_{0};
};

} // namespace wsc
