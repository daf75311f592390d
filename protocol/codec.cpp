#include "protocol/codec.hpp"

#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "protocol/names.hpp"

#include <caf/sec.hpp>

namespace wsc {

namespace {

std::string dump(const nlohmann::json& x) {
  return x.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

frame_codec::~frame_codec() = default;

// -- json_codec ---------------------------------------------------------------

caf::expected<nlohmann::json> json_codec::decode(std::string_view payload, bool,
                                                 std::string&) const {
  return frames::parse_object(payload);
}

std::string json_codec::encode_answer(std::string frame,
                                      std::string_view) const {
  return frame;
}

std::string json_codec::encode_push(std::string_view frame) const {
  return std::string{frame};
}

// -- swoft_codec --------------------------------------------------------------

// The context of a decoded frame is "<cmd as JSON text>\n<ext as JSON text>":
// JSON text as dumped holds no raw line break, so the first one splits.

caf::expected<nlohmann::json> swoft_codec::decode(std::string_view payload,
                                                  bool,
                                                  std::string& context) const {
  auto parsed = frames::parse_object(payload);
  if (!parsed)
    return std::move(parsed.error());
  auto cmd = parsed->find("cmd");
  if (cmd == parsed->end() || !cmd->is_string() ||
      !valid_name(cmd->get_ref<const std::string&>()))
    return make_error(ec::bad_frame,
                      "missing or malformed 'cmd' (the frame type: 1-128 "
                      "bytes, no spaces or control characters)");
  auto type = cmd->get<std::string>();
  std::string cmd_text;
  frames::append_quoted(cmd_text, type);
  context = cmd_text + "\n{}";
  nlohmann::json id;
  if (auto ext = parsed->find("ext"); ext != parsed->end() && !ext->is_null()) {
    // PHP's json_encode writes an empty ext array as [].
    if (!ext->is_object() && !ext->is_array())
      return make_error(ec::bad_frame, "ext must be an object");
    auto ext_text = dump(*ext);
    if (ext_text.size() > max_ext_bytes)
      return make_error(ec::bad_frame, "ext is larger than " +
                                           std::to_string(max_ext_bytes) +
                                           " bytes");
    context = cmd_text + '\n' + ext_text;
    if (ext->is_object()) {
      if (auto i = ext->find("id"); i != ext->end()) {
        if (!i->is_string() && !i->is_number())
          return make_error(ec::bad_frame,
                            "ext.id must be a string or a number");
        id = std::move(*i);
      }
    }
  }
  nlohmann::json frame = nlohmann::json::object();
  if (auto data = parsed->find("data"); data != parsed->end()) {
    if (data->is_object())
      frame = std::move(*data);
    else if (!data->is_null())
      frame["data"] = std::move(*data);
  }
  frame["type"] = std::move(type);
  if (!id.is_null())
    frame["id"] = std::move(id);
  return frame;
}

std::string swoft_codec::encode_answer(std::string frame,
                                       std::string_view context) const {
  auto split = context.find('\n');
  if (split == std::string_view::npos)
    return encode_push(frame);
  std::string out;
  out.reserve(frame.size() + context.size() + 24);
  out += "{\"cmd\":";
  out += context.substr(0, split);
  out += ",\"data\":";
  out += frame;
  out += ",\"ext\":";
  out += context.substr(split + 1);
  out += '}';
  return out;
}

std::string swoft_codec::encode_push(std::string_view frame) const {
  auto type = frame_type_of(frame);
  std::string out;
  out.reserve(frame.size() + type.size() + 32);
  out += "{\"cmd\":";
  if (type.empty())
    out += "null";
  else
    frames::append_quoted(out, type);
  out += ",\"data\":";
  out += frame;
  out += ",\"ext\":{}}";
  return out;
}

// -- frame_type_of ------------------------------------------------------------

std::string frame_type_of(std::string_view frame) {
  // The node's own frames start with {"type":"<plain name>".
  constexpr std::string_view prefix = "{\"type\":\"";
  if (frame.substr(0, prefix.size()) == prefix) {
    auto end = frame.find_first_of("\"\\", prefix.size());
    if (end != std::string_view::npos && frame[end] == '"')
      return std::string{frame.substr(prefix.size(), end - prefix.size())};
  }
  auto parsed = frames::parse_object(frame);
  if (!parsed)
    return {};
  auto type = parsed->find("type");
  if (type == parsed->end() || !type->is_string())
    return {};
  return type->get<std::string>();
}

// -- codec_registry -----------------------------------------------------------

codec_registry::codec_registry() {
  add("json", [](const options&) { return std::make_shared<json_codec>(); });
  add("swoft", [](const options&) { return std::make_shared<swoft_codec>(); });
}

void codec_registry::add(const std::string& name, factory make) {
  factories_[name] = std::move(make);
}

caf::expected<frame_codec_ptr> codec_registry::make(const options& opts) const {
  auto i = factories_.find(opts.frame_codec);
  if (i == factories_.end()) {
    std::string known;
    for (auto& name : names())
      known += (known.empty() ? "" : ", ") + name;
    std::string name;
    frames::append_quoted(name, opts.frame_codec.substr(0, 64));
    return caf::make_error(caf::sec::invalid_argument,
                           "unknown frame-codec " + name + " (known: " + known +
                               ")");
  }
  auto codec = i->second(opts);
  if (!codec)
    return caf::make_error(caf::sec::invalid_argument,
                           "frame-codec '" + opts.frame_codec +
                               "': its factory made no codec");
  return codec;
}

std::vector<std::string> codec_registry::names() const {
  std::vector<std::string> result;
  for (auto& entry : factories_)
    result.push_back(entry.first);
  return result;
}

} // namespace wsc
