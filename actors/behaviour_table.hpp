#pragma once

#include "actors/actors.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

namespace wsc {

/// Maps client frame types to the behaviour actors that handle them. A key
/// ending in `.*` handles every type with that prefix (`bot.*`); an exact
/// type wins over a prefix, a longer prefix over a shorter one. Read on every
/// frame by every connection, written rarely: thread-safe.
class behaviour_table {
public:
  /// Registers `handler` for `type` (or `prefix.*`), replacing any earlier one.
  void add(const std::string& type, behaviour_actor handler);

  /// Removes the handler of `type`; returns whether there was one.
  bool remove(const std::string& type);

  /// Removes every registration of `handler`.
  void remove_all(const behaviour_actor& handler);

  /// The handler for a frame type, or an invalid handle.
  behaviour_actor find(const std::string& type) const;

  /// Every registered key (types and prefixes).
  std::map<std::string, behaviour_actor> snapshot() const;

private:
  mutable std::shared_mutex mtx_;
  std::map<std::string, behaviour_actor> exact_;
  std::map<std::string, behaviour_actor> prefixes_; // key without the '*'
};

} // namespace wsc
