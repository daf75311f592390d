#include "flow/handshake_budget.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>

namespace wsc {

bool handshake_budget::admit(const std::string& address,
                             clock::time_point now) {
  if (rate_ <= 0)
    return true;
  auto key = address_key(address);
  std::lock_guard guard{mtx_};
  sweep(now);
  auto i = buckets_.find(key);
  if (i == buckets_.end()) {
    if (buckets_.size() >= max_tracked)
      return true;
    i = buckets_.emplace(std::move(key), bucket{burst(), now}).first;
  }
  auto& b = i->second;
  auto elapsed = std::chrono::duration<double>(now - b.refilled).count();
  b.tokens = std::min(burst(), b.tokens + std::max(elapsed, 0.0) * rate_);
  b.refilled = now;
  if (b.tokens < 1)
    return false;
  b.tokens -= 1;
  return true;
}

std::string address_key(const std::string& address) {
  in6_addr v6{};
  if (address.find(':') == std::string::npos ||
      inet_pton(AF_INET6, address.c_str(), &v6) != 1)
    return address;
  // The 96-bit prefixes whose last 32 bits are an IPv4 address.
  static constexpr uint8_t v4_prefixes[][12] = {
      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},    // IPv4-mapped
      {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0},    // SIIT
      {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0}, // NAT64
  };
  char text[INET6_ADDRSTRLEN];
  for (auto& prefix : v4_prefixes)
    if (std::equal(prefix, prefix + 12, v6.s6_addr) &&
        inet_ntop(AF_INET, v6.s6_addr + 12, text, sizeof(text)) != nullptr)
      return text;
  std::fill(v6.s6_addr + 8, v6.s6_addr + 16, uint8_t{0});
  if (inet_ntop(AF_INET6, &v6, text, sizeof(text)) == nullptr)
    return address;
  return std::string{text} + "/64";
}

size_t handshake_budget::size() const {
  std::lock_guard guard{mtx_};
  return buckets_.size();
}

void handshake_budget::sweep(clock::time_point now) {
  if (now - last_sweep_ < std::chrono::seconds{1})
    return;
  last_sweep_ = now;
  auto full = burst();
  for (auto i = buckets_.begin(); i != buckets_.end();) {
    auto elapsed =
        std::chrono::duration<double>(now - i->second.refilled).count();
    if (i->second.tokens + elapsed * rate_ >= full)
      i = buckets_.erase(i);
    else
      ++i;
  }
}

} // namespace wsc
