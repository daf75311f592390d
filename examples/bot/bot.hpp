#pragma once

// A chat bot: a behaviour actor for the frame types `bot.*`.
//
//   -> {"type":"bot.ask","id":1,"text":"what time is it?"}
//   <- {"type":"bot.answer","id":1,"text":"It is 12:34:56 UTC.","node":"n1"}
//   -> {"type":"bot.tell","id":2,"to":"bob","text":"lunch?"}
//   <- {"type":"ack","id":2}    (bob gets {"type":"message","from":"bot",..})
//
// It answers from whichever node the asker is connected to, and reaches
// receivers on any node through the same SEND operation as the built-in
// `send` type.

#include "actors/actors.hpp"

#include <chrono>
#include <string>

namespace example {

/// The state of the BOT behaviour actor.
struct bot_state {
  static inline const char* name = "bot";

  /// The node's operations (send, publish, join, ...): its REGISTRY.
  wsc::messaging_actor messaging;
  /// How long an operation may take.
  std::chrono::milliseconds timeout{5000};
};

/// Spawn arguments: the node's REGISTRY and its `request-timeout`.
wsc::behaviour_actor::behavior_type
bot(wsc::behaviour_actor::stateful_pointer<bot_state> self,
    wsc::messaging_actor messaging, std::chrono::milliseconds timeout);

/// The bot's answer to `question` from `uid`, on node `node`.
std::string bot_answer(const std::string& question, const std::string& uid,
                       const std::string& node);

} // namespace example
