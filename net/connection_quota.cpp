#include "net/connection_quota.hpp"

#include "flow/handshake_budget.hpp"

namespace wsc {

bool connection_quota::acquire(const std::string& uid,
                               const std::string& address, uint64_t per_uid,
                               uint64_t per_address) {
  auto key = address_key(address);
  std::lock_guard guard{mtx_};
  auto& of_uid = by_uid_[uid];
  auto& of_address = by_address_[key];
  if ((per_uid != 0 && of_uid >= per_uid) ||
      (per_address != 0 && of_address >= per_address)) {
    if (of_uid == 0)
      by_uid_.erase(uid);
    if (of_address == 0)
      by_address_.erase(key);
    return false;
  }
  ++of_uid;
  ++of_address;
  return true;
}

void connection_quota::release(const std::string& uid,
                               const std::string& address) {
  auto key = address_key(address);
  std::lock_guard guard{mtx_};
  give_back(by_uid_, uid);
  give_back(by_address_, key);
}

bool connection_quota::acquire_socket(const std::string& address,
                                      uint64_t per_address) {
  if (per_address == 0)
    return true;
  auto key = address_key(address);
  std::lock_guard guard{mtx_};
  auto& n = sockets_by_address_[key];
  if (n >= per_address)
    return false; // n > 0: the entry was there
  ++n;
  return true;
}

void connection_quota::release_socket(const std::string& address) {
  auto key = address_key(address);
  std::lock_guard guard{mtx_};
  give_back(sockets_by_address_, key);
}

void connection_quota::give_back(counts& map, const std::string& key) {
  if (auto i = map.find(key); i != map.end() && --i->second == 0)
    map.erase(i);
}

} // namespace wsc
