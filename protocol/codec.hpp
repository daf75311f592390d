#pragma once

// -- Frame codecs: the wire form of client frames
// ------------------------------
//
// Inside the node every client frame is the contract's JSON object
// (`{"type":..,"id":..,...}`) and every frame written to a client is that
// JSON's text. A codec translates at the connection's boundary: it decodes
// what a client sends into the internal object and encodes what the node
// writes back. `frame-codec` picks one per node; `json` (the default) is the
// identity and costs nothing, `swoft` speaks Swoft's websocket-server form
// `{"cmd":"<controller>.<action>","data":..,"ext":..}`. Embedding
// applications register their own (docs/embedding.md).
//
// Codecs are pure functions of their input: no actors, no I/O. They run on
// the connection's threads, concurrently for many connections, so every
// member function must be safe to call from several threads at once.

#include "config/options.hpp"

#include <caf/expected.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsc {

/// Translates one client's frames between its wire form and the node's
/// internal JSON frames.
class frame_codec {
public:
  virtual ~frame_codec();

  /// Decodes a client frame into the internal frame: a JSON object with a
  /// string `type` (the frame type that picks the behaviour) and that type's
  /// fields; an `id` (string or number) is answered back. `payload` is at
  /// most `max-message-bytes` and hostile. `context` keeps whatever the
  /// codec needs to answer this frame in its own form (it gets it back in
  /// `encode_answer`); fill it as early as possible, so that an error about
  /// a frame that decoded partly still reaches the client in that form.
  /// Errors: `ec::bad_json` (not parseable), `ec::bad_frame` (parseable,
  /// but not a frame), each with a message for the client. Never throws.
  virtual caf::expected<nlohmann::json>
  decode(std::string_view payload, bool binary, std::string& context) const = 0;

  /// Encodes the node's answer to a decoded frame for the client. `frame`
  /// is the answer in the json codec's form (`ack`, `error` or a
  /// behaviour's reply, with the frame's `id`); `context` is what `decode`
  /// left, possibly empty (the frame did not decode that far, or was
  /// refused before decoding, e.g. rate-limited).
  virtual std::string encode_answer(std::string frame,
                                    std::string_view context) const = 0;

  /// Encodes a frame the node writes unasked (message, group, broadcast,
  /// welcome, bye, a behaviour's push, an error that answers no frame),
  /// given in the json codec's form. Runs once per receiving connection: a
  /// broadcast's frame is encoded by each of its receivers.
  virtual std::string encode_push(std::string_view frame) const = 0;

  /// Whether binary WebSocket frames reach `decode`; when false a binary
  /// frame gets `bad_frame` (the connection stays open).
  virtual bool reads_binary() const { return false; }

  /// Whether frames are written as binary WebSocket frames (else text).
  virtual bool writes_binary() const { return false; }

  /// The codec reads and writes the contract's JSON as it is: the node
  /// neither decodes nor encodes (only the built-in json codec says so).
  virtual bool identity() const { return false; }
};

using frame_codec_ptr = std::shared_ptr<const frame_codec>;

/// The contract's JSON frames, unchanged (`frame-codec=json`). Binary frames
/// are read as text, as they always were. The node never calls its
/// functions; they exist for completeness and tests.
class json_codec : public frame_codec {
public:
  caf::expected<nlohmann::json> decode(std::string_view payload, bool binary,
                                       std::string& context) const override;
  std::string encode_answer(std::string frame,
                            std::string_view context) const override;
  std::string encode_push(std::string_view frame) const override;
  bool reads_binary() const override { return true; }
  bool identity() const override { return true; }
};

/// Swoft's websocket-server form (`frame-codec=swoft`):
///
///   -> {"cmd":"<type>","data":{..fields..},"ext":{"id":7,..}}
///   <- {"cmd":"<request's cmd>","data":<json frame>,"ext":<request's ext>}
///   <- {"cmd":"<json frame's type>","data":<json frame>,"ext":{}}  (pushes)
///
/// `cmd` is the frame type (a name: 1-128 bytes, no spaces or control
/// characters). An object `data` gives the frame's fields (`cmd` wins over a
/// `type` in it); any other `data` becomes the field `data`; no `data`, no
/// fields. The request id is `ext.id` (string or number). `ext` is an object
/// of at most `max_ext_bytes` as JSON text, echoed back in the answer; an
/// answer's `data` is exactly the frame a json client would get (`ack`,
/// `error` or the reply, `id` included). Errors about frames whose `cmd` is
/// unknown come as a push (`"cmd":"error"`). Binary frames are read as text.
class swoft_codec : public frame_codec {
public:
  /// The most bytes of `ext` (as JSON text) a frame may carry: it is sent
  /// back with the answer.
  static constexpr size_t max_ext_bytes = 1024;

  caf::expected<nlohmann::json> decode(std::string_view payload, bool binary,
                                       std::string& context) const override;
  std::string encode_answer(std::string frame,
                            std::string_view context) const override;
  std::string encode_push(std::string_view frame) const override;
  bool reads_binary() const override { return true; }
};

/// The `type` of a frame in the json codec's form, read without parsing
/// when the frame starts with it (as every frame the node builds does);
/// empty when it has no string `type`.
std::string frame_type_of(std::string_view frame);

/// Builds codecs by name, so that config can pick one (`frame-codec`). The
/// built-ins are `json` and `swoft`.
class codec_registry {
public:
  using factory = std::function<frame_codec_ptr(const options&)>;

  /// A registry holding the built-in codecs.
  codec_registry();

  /// Registers (or replaces) the codec `name`.
  void add(const std::string& name, factory make);

  /// The codec `opts.frame_codec` names. Errors: `invalid_argument` for a
  /// name nobody registered (the message lists the known ones).
  caf::expected<frame_codec_ptr> make(const options& opts) const;

  /// The registered names, sorted.
  std::vector<std::string> names() const;

private:
  std::map<std::string, factory> factories_;
};

} // namespace wsc
