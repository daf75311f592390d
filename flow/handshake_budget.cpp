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
  auto full = burst();
  auto is_full = [&](const bucket& b) {
    auto elapsed = std::chrono::duration<double>(now - b.refilled).count();
    return b.tokens + elapsed * rate_ >= full;
  };
  for (size_t n = 0; n < slots_per_sweep && !buckets_.empty(); ++n) {
    // Rehashing moves entries between slots: a sweep may then miss some
    // until the next round, which costs only memory within max_tracked.
    auto slot = next_slot_++ % buckets_.bucket_count();
    std::string drop[4];
    size_t dropping = 0;
    for (auto i = buckets_.begin(slot);
         i != buckets_.end(slot) && dropping < std::size(drop); ++i)
      if (is_full(i->second))
        drop[dropping++] = i->first;
    for (size_t k = 0; k < dropping; ++k)
      buckets_.erase(drop[k]);
  }
}

} // namespace wsc
