#include "actors/node_identity.hpp"

#include <random>

namespace wsc {

namespace {

std::string hex(uint64_t value, int digits) {
  static constexpr char alphabet[] = "0123456789abcdef";
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, value >>= 4)
    out[static_cast<size_t>(i)] = alphabet[value & 0xF];
  return out;
}

} // namespace

node_identity node_identity::draw(const std::string& configured) {
  std::random_device rd;
  std::mt19937_64 rng{(uint64_t{rd()} << 32) ^ rd()};
  node_identity result;
  result.incarnation = rng() >> 16; // 48 bits: short ids, collisions irrelevant
  result.id = configured.empty() ? "n-" + hex(rng(), 10) : configured;
  return result;
}

std::string conn_id_source::next() {
  return who_.id + "." + hex(who_.incarnation, 12) + "." +
         std::to_string(++seq_);
}

} // namespace wsc
