#include "line_codec.hpp"

#include "middleware/middleware.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"

namespace example {

caf::expected<nlohmann::json> line_codec::decode(std::string_view payload, bool,
                                                 std::string&) const {
  // Every string from a client is hostile: the type must be a name, the
  // fields a bounded JSON object; errors never throw.
  auto space = payload.find(' ');
  auto type = payload.substr(0, space);
  if (!wsc::valid_name(type))
    return wsc::make_error(wsc::ec::bad_frame,
                           "a frame is '<type> {fields as JSON}'");
  auto frame = nlohmann::json::object();
  if (space != std::string_view::npos) {
    auto fields = payload.substr(space + 1);
    if (!wsc::frames::json_depth_ok(fields))
      return wsc::make_error(wsc::ec::bad_json, "fields nest too deep");
    frame = nlohmann::json::parse(fields, nullptr, false);
    if (frame.is_discarded())
      return wsc::make_error(wsc::ec::bad_json, "fields are not valid JSON");
    if (!frame.is_object())
      return wsc::make_error(wsc::ec::bad_frame,
                             "fields must be a JSON object");
  }
  frame["type"] = std::string{type};
  return frame;
}

std::string line_codec::encode_answer(std::string frame,
                                      std::string_view) const {
  // The answer carries the frame's id: no context needed.
  return encode_push(frame);
}

std::string line_codec::encode_push(std::string_view frame) const {
  auto type = wsc::frame_type_of(frame);
  std::string out;
  out.reserve(type.size() + 1 + frame.size());
  out += type.empty() ? "-" : type;
  out += ' ';
  out += frame;
  return out;
}

} // namespace example
