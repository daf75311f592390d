#include "net/pending_peers.hpp"

#include "flow/handshake_budget.hpp"

#include <algorithm>

namespace wsc::net {

std::vector<pending_peers::key> pending_peers::add(key conn,
                                                   const std::string& address,
                                                   clock::time_point now) {
  std::vector<key> displaced;
  if (index_.count(conn) != 0)
    return displaced;
  auto addr = address_key(address);
  if (per_address_[addr] >= bounds_.per_address) {
    auto oldest =
        std::find_if(order_.begin(), order_.end(),
                     [&](const entry& e) { return e.address == addr; });
    displaced.push_back(oldest->conn);
    erase(oldest);
  }
  if (order_.size() >= bounds_.total && !order_.empty()) {
    displaced.push_back(order_.front().conn);
    erase(order_.begin());
  }
  order_.push_back(entry{conn, addr, now});
  index_.emplace(conn, std::prev(order_.end()));
  ++per_address_[addr];
  return displaced;
}

void pending_peers::remove(key conn) {
  if (auto i = index_.find(conn); i != index_.end())
    erase(i->second);
}

std::vector<pending_peers::key> pending_peers::expired(clock::time_point now) {
  std::vector<key> result;
  while (!order_.empty() && now - order_.front().since >= bounds_.deadline) {
    result.push_back(order_.front().conn);
    erase(order_.begin());
  }
  return result;
}

void pending_peers::erase(list::iterator pos) {
  if (auto i = per_address_.find(pos->address);
      i != per_address_.end() && --i->second == 0)
    per_address_.erase(i);
  index_.erase(pos->conn);
  order_.erase(pos);
}

} // namespace wsc::net
