#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace wsc {

/// Error codes that reach clients as `{"type":"error","code":...}`. The
/// names read like the contract's error codes.
enum class ec : uint8_t {
  /// Not an error.
  none = 0,
  /// The frame is not valid JSON.
  bad_json,
  /// A required field is missing or has the wrong type.
  bad_frame,
  /// No behaviour actor is registered for the frame's type.
  unknown_type,
  /// The operation is not allowed for this sender.
  forbidden,
  /// The sender is not a member of the group it publishes to.
  not_member,
  /// The sender exceeded the configured frame rate.
  rate_limited,
  /// The connection reached the limit of joined groups.
  too_many_groups,
  /// The state store is unreachable for an operation that needs it.
  unavailable,
  /// A bug or an unexpected failure inside the node.
  internal,
  /// The frame or request would store or write more than a budget allows
  /// (`max-fanout-bytes`): receivers times payload bytes.
  too_large,
  /// The group has `max-group-members` members already.
  group_full,
};

/// Number of values of `ec`.
constexpr size_t ec_count = static_cast<size_t>(ec::group_full) + 1;

/// The error category of `ec` in `caf::error` (at most 10 characters).
constexpr caf::atom_value ec_category = caf::atom("wsc");

/// Returns the contract's spelling of `x`, e.g. "bad_json".
const char* to_string(ec x);

/// Converts a `caf::error` into the contract's error code; errors from other
/// categories (timeouts, dead actors) become `unavailable` or `internal`.
ec to_ec(const caf::error& err);

/// Returns the human-readable context string carried by `err`, if any.
std::string error_message(const caf::error& err);

/// @relates ec
inline caf::error make_error(ec x) {
  return {static_cast<uint8_t>(x), ec_category};
}

/// @relates ec
inline caf::error make_error(ec x, std::string message) {
  return {static_cast<uint8_t>(x), ec_category,
          caf::make_message(std::move(message))};
}

} // namespace wsc
