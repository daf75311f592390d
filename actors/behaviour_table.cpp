#include "actors/behaviour_table.hpp"

namespace wsc {

namespace {

bool is_prefix_key(const std::string& type) {
  return type.size() >= 2 && type.compare(type.size() - 2, 2, ".*") == 0;
}

} // namespace

void behaviour_table::add(const std::string& type, behaviour_actor handler) {
  std::unique_lock guard{mtx_};
  if (is_prefix_key(type))
    prefixes_[type.substr(0, type.size() - 1)] = std::move(handler);
  else
    exact_[type] = std::move(handler);
}

bool behaviour_table::remove(const std::string& type) {
  std::unique_lock guard{mtx_};
  if (is_prefix_key(type))
    return prefixes_.erase(type.substr(0, type.size() - 1)) > 0;
  return exact_.erase(type) > 0;
}

void behaviour_table::remove_all(const behaviour_actor& handler) {
  std::unique_lock guard{mtx_};
  for (auto* table : {&exact_, &prefixes_})
    for (auto i = table->begin(); i != table->end();)
      i = i->second == handler ? table->erase(i) : std::next(i);
}

behaviour_actor behaviour_table::find(const std::string& type) const {
  std::shared_lock guard{mtx_};
  if (auto i = exact_.find(type); i != exact_.end())
    return i->second;
  // Prefixes are sorted: the longest match is the last one not after `type`.
  for (auto i = prefixes_.upper_bound(type); i != prefixes_.begin();) {
    --i;
    if (type.compare(0, i->first.size(), i->first) == 0)
      return i->second;
  }
  return {};
}

std::map<std::string, behaviour_actor> behaviour_table::snapshot() const {
  std::shared_lock guard{mtx_};
  auto result = exact_;
  for (auto& [prefix, handler] : prefixes_)
    result.emplace(prefix + "*", handler);
  return result;
}

} // namespace wsc
