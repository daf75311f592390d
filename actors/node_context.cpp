#include "actors/node_context.hpp"

#include "protocol/frames.hpp"

#include <algorithm>
#include <random>

namespace wsc {

connection_sink::~connection_sink() = default;

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

bool connection_quota::acquire(const std::string& uid,
                               const std::string& address, uint64_t per_uid,
                               uint64_t per_address) {
  std::lock_guard guard{mtx_};
  auto& of_uid = by_uid_[uid];
  auto& of_address = by_address_[address];
  if ((per_uid != 0 && of_uid >= per_uid) ||
      (per_address != 0 && of_address >= per_address)) {
    if (of_uid == 0)
      by_uid_.erase(uid);
    if (of_address == 0)
      by_address_.erase(address);
    return false;
  }
  ++of_uid;
  ++of_address;
  return true;
}

void connection_quota::release(const std::string& uid,
                               const std::string& address) {
  std::lock_guard guard{mtx_};
  auto give_back = [](auto& map, const std::string& key) {
    if (auto i = map.find(key); i != map.end() && --i->second == 0)
      map.erase(i);
  };
  give_back(by_uid_, uid);
  give_back(by_address_, address);
}

namespace {

std::string hex(uint64_t value, int digits) {
  static constexpr char alphabet[] = "0123456789abcdef";
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, value >>= 4)
    out[static_cast<size_t>(i)] = alphabet[value & 0xF];
  return out;
}

} // namespace

node_context::node_context(options o) : opts(std::move(o)) {
  std::random_device rd;
  std::mt19937_64 rng{(uint64_t{rd()} << 32) ^ rd()};
  incarnation = rng() >> 16; // 48 bits: short ids, collisions irrelevant
  node_id = opts.node_id.empty() ? "n-" + hex(rng(), 10) : opts.node_id;
}

bool node_context::durable(const std::string& type) const {
  auto& v = opts.volatile_types;
  return std::find(v.begin(), v.end(), type) == v.end();
}

std::string node_context::next_conn_id() {
  return node_id + "." + hex(incarnation, 12) + "." +
         std::to_string(++conn_seq_);
}

} // namespace wsc
