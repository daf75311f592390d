#pragma once

// A frame codec for line-oriented clients (telnet-like tools, shell
// scripts, microcontrollers without a JSON encoder):
//
//   -> send {"to":"bob","data":"hi","id":7}     <type> [<fields as JSON>]
//   -> ping                                     (no fields)
//   <- ack {"type":"ack","id":7}                <type> <the json frame>
//   <- message {"type":"message","from":"ann",...}
//
// Run a node with it: `--frame-codec=line` (main.cpp registers it).

#include "protocol/codec.hpp"

namespace example {

/// `<type> {fields}` in, `<type> <json frame>` out; text frames only.
/// Stateless, so safe on every connection's thread at once.
class line_codec : public wsc::frame_codec {
public:
  caf::expected<nlohmann::json> decode(std::string_view payload, bool binary,
                                       std::string& context) const override;

  std::string encode_answer(std::string frame,
                            std::string_view context) const override;

  std::string encode_push(std::string_view frame) const override;
};

} // namespace example
