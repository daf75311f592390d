#pragma once

// -- Encoding of server frames ------------------------------------------------
//
// Outgoing frames are built by appending JSON text: the payload `data` is
// already JSON text and is copied in, never parsed again.

#include "protocol/error.hpp"
#include "protocol/messages.hpp"

#include <caf/expected.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsc::frames {

/// A client frame that passed the checks every frame gets.
struct client_frame {
  json_ptr body;
  /// The frame's `type`.
  std::string type;
};

/// The deepest nesting of arrays and objects a client may send. nlohmann's
/// parser copes with any depth, but serializing recurses once per level: a
/// 64 KB frame of nested arrays would overflow the stack.
constexpr size_t max_json_depth = 64;

/// Whether `text` nests arrays and objects at most `max_json_depth` deep
/// (a scan that skips string contents; validity is the parser's job).
bool json_depth_ok(std::string_view text);

/// Whether `text` is one JSON value the node may copy into a frame as it
/// is: valid JSON, nested at most `max_json_depth` deep. For payloads from
/// outside this process (a peer, the relay, the store).
bool json_payload_ok(std::string_view text);

/// Parses `text` as a JSON object, refusing what the node refuses of any
/// JSON frame: nesting beyond `max_json_depth`, invalid JSON (`bad_json`),
/// anything but an object (`bad_frame`).
caf::expected<nlohmann::json> parse_object(std::string_view text);

/// Parses a client frame and checks what every frame needs: a JSON object
/// with a string `type` and, if any, a string or number `id`. Writes the
/// `id` (as JSON text) to `id` as soon as it is known, so that errors can
/// carry it. Errors: `bad_json`, `bad_frame`.
caf::expected<client_frame> parse_client(std::string_view text,
                                         std::string& id);

/// Appends `text` as a JSON string literal (quoted, escaped) to `out`.
void append_quoted(std::string& out, std::string_view text);

/// `{"type":"welcome","uid":..,"conn":..,"node":..}`
std::string welcome(const conn_ref& who);

/// The welcome of a device that resumes: `"resumed":true,"from":a,"to":b`
/// (the replayed range), or `"resumed":false,"reason":..` when retention
/// dropped part of it (`too_old`) or the store could not be read.
std::string welcome(const conn_ref& who, bool resumed, std::string_view reason,
                    uint64_t from, uint64_t to);

/// `{"type":"message","from":..,"to":..,"data":..,"ts":..}`; an empty
/// `from` is written as null (HTTP API).
std::string message(std::string_view from, std::string_view to,
                    std::string_view data, int64_t ts);

/// `{"type":"broadcast","from":..,"data":..,"ts":..}`
std::string broadcast(std::string_view from, std::string_view data, int64_t ts);

/// `{"type":"group","group":..,"from":..,"data":..,"ts":..}`
std::string group(std::string_view group, std::string_view from,
                  std::string_view data, int64_t ts);

/// Encodes the frame a delivery produces for receiver `uid`; a non-zero
/// `seq` adds `"seq"` and `"msg_id"` (durable messages).
std::string encode(const delivery& d, std::string_view uid, uint64_t seq = 0);

/// Encodes a stored message for the owner of the inbox it was read from.
std::string encode(const stored_message& msg, std::string_view uid);

/// `{"type":"ack","id":..}`; `id` is JSON text, empty when the frame had none.
std::string ack(std::string_view id);

/// `{"type":"error","id":..,"code":..,"message":..}`
std::string error(std::string_view id, ec code, std::string_view message);

/// `{"type":"bye","reason":..,"reconnect_after_ms":..}`
std::string bye(std::string_view reason, int64_t reconnect_after_ms);

/// Serializes a behaviour's answer, adding the frame's `id` (JSON text) when
/// the answer has none.
std::string reply(const nlohmann::json& answer, std::string_view id);

/// The answer to a members request: `{"group":..,"uids":[..]}` with at most
/// `limit` uids, plus `"truncated":true` when the group has more.
nlohmann::json members(const std::string& group, std::vector<std::string> uids,
                       size_t limit);

/// Read cursors one uid may keep (one per device): each costs store memory
/// for `inbox-max-age`, and device names come from clients.
constexpr size_t max_devices_per_uid = 64;

/// How long a store remembers a uid's last seq after its inbox expired (30
/// days past inbox-max-age): the inbox's next life continues after it, so
/// a `since` or cursor of the earlier life reads as `too_old` instead of
/// skipping the new life's first messages. After that the next life starts
/// at seq 1 again: a client silent for so long has no useful position.
constexpr int64_t seq_hint_keep_ms = int64_t{30} * 24 * 3600 * 1000;

/// The most connection ids one `except` list may name.
constexpr size_t max_except = 256;

/// The node id part of a connection id (`<node>.<incarnation>.<seq>`, see
/// conn_id_source::next); empty if `conn` is not of that form.
std::string_view node_of_conn(std::string_view conn);

/// The error a `read` of one device too many gets.
caf::error too_many_devices();

/// `too_large` when `receivers` copies of a payload of `payload_bytes`
/// exceed `budget` (`max-fanout-bytes`): what one send may store and write.
caf::error check_fanout(size_t receivers, size_t payload_bytes,
                        uint64_t budget);

/// Checks a delivery decoded from outside this process (a peer, the relay):
/// its kind, names, counts and payload (a JSON value, except for a
/// disconnect's, which is not written). Errors: `bad_frame`.
caf::error check(const delivery& d);

/// Checks a stored message read back from the state store, as `check`.
caf::error check(const stored_message& msg);

/// Milliseconds since the epoch.
int64_t now_ms();

/// A new message of `kind` from `from` (empty: the HTTP API), payload
/// `data` (JSON text), timestamped now; `durable` stores it in inboxes.
delivery make_delivery(delivery_kind kind, std::string from, std::string data,
                       bool durable = false);

} // namespace wsc::frames
