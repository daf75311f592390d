#pragma once

// -- What a send, publish or broadcast asks for
// ------------------------------------
//
// The built-in frame types and the HTTP API take the same fields (`to`,
// `to_conn`, `group`, `data`, `idem`, `except`, `except_self`): both read
// them here, with the same checks and messages, into a `delivery`. Errors are
// `bad_frame` (the API answers 400) and `too_large` (413).

#include "protocol/messages.hpp"

#include <caf/expected.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsc::ops {

/// The most uids one client frame (`send`, `presence`) may name: a client is
/// untrusted, and a volatile send to many uids costs no stored bytes.
constexpr size_t frame_max_uids = 1000;

/// The most uids one HTTP API call may name (the application's backend,
/// holding the API key); `max-fanout-bytes` bounds what a send produces.
constexpr size_t api_max_uids = 10000;

/// The most bytes of `data` an HTTP API call may carry, as the node writes
/// it out (the API's body limit).
constexpr size_t api_max_data_bytes = 1u << 20;

/// The longest idempotency key (`idem`) of a `send` or `publish`, in bytes.
constexpr size_t max_idem_bytes = 64;

/// Who asks: a client's connection, or the HTTP API (empty uid and conn).
struct origin {
  std::string uid;
  std::string conn;
  /// The most uids a list may name (frame_max_uids or api_max_uids).
  size_t max_uids = frame_max_uids;
  /// The most bytes of `data` as the node writes it out: JSON re-encoded
  /// may be longer than what came in (`1e14` becomes `100000000000000.0`),
  /// so the frame's own bound does not bound it (`max-message-bytes`, or
  /// api_max_data_bytes).
  size_t max_data_bytes = api_max_data_bytes;
  /// The client's address (empty for the API): see delivery::sender_address.
  std::string address;
};

/// A required string field holding a valid name (uid or group).
caf::expected<std::string> name_field(const nlohmann::json& object,
                                      const char* name);

/// A required field holding one uid or a non-empty list of at most
/// `max_uids` uids; each uid is kept once, in order.
caf::expected<std::vector<std::string>>
uid_list(const nlohmann::json& object, const char* name, size_t max_uids);

/// The required field `data`, as JSON text of at most `max_bytes` bytes
/// (`too_large` beyond).
caf::expected<std::string> data_field(const nlohmann::json& object,
                                      size_t max_bytes);

/// Whether an idempotency key is at most `max_idem_bytes` of UTF-8 (it
/// becomes part of a Redis key).
bool idem_fits(std::string_view idem);

/// Reads the optional field `idem` into `idem`: absent leaves it empty;
/// anything but a string of 1-64 bytes of UTF-8 is `bad_frame`.
caf::error read_idem(const nlohmann::json& object, std::string& idem);

/// Reads the optional addressing fields into `d`: `except` (at most
/// frames::max_except connection ids), `except_self` (adds `own_conn`; the
/// API has none and gets `bad_frame`) and, where `to_conn_allowed`,
/// `to_conn` (one connection id, instead of `to`).
caf::error read_addressing(const nlohmann::json& object,
                           const std::string& own_conn, bool to_conn_allowed,
                           delivery& d);

/// A `send`: `to` (uid_list) or `to_conn`, `data`, `idem`, addressing;
/// `too_large` past `max_fanout_bytes` (frames::check_fanout).
caf::expected<delivery> send(const nlohmann::json& object, const origin& from,
                             bool durable, uint64_t max_fanout_bytes);

/// A `publish`: `group`, `data`, `idem`, `except`, `except_self`.
caf::expected<delivery> publish(const nlohmann::json& object,
                                const origin& from, bool durable);

/// A `broadcast`: `data`, `except`, `except_self`.
caf::expected<delivery> broadcast(const nlohmann::json& object,
                                  const origin& from);

} // namespace wsc::ops
