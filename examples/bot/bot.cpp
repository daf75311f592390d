#include "bot.hpp"

#include "middleware/middleware.hpp"
#include "protocol/error.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace example {

namespace {

using json = nlohmann::json;

/// A string field of a frame, or nullptr.
const std::string* string_field(const json& frame, const char* name) {
  auto i = frame.find(name);
  if (i == frame.end() || !i->is_string())
    return nullptr;
  return &i->get_ref<const std::string&>();
}

caf::error missing(const char* name) {
  return wsc::make_error(wsc::ec::bad_frame,
                         std::string{"field '"} + name + "' must be a string");
}

bool mentions(const std::string& text, const char* word) {
  return text.find(word) != std::string::npos;
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

} // namespace

std::string bot_answer(const std::string& question, const std::string& uid,
                       const std::string& node) {
  auto text = question;
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (mentions(text, "time")) {
    auto now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char buf[16];
    std::strftime(buf, sizeof(buf), "%H:%M:%S", &utc);
    return std::string{"It is "} + buf + " UTC.";
  }
  if (mentions(text, "who are you"))
    return "I am the bot of node " + node + ".";
  if (mentions(text, "hello") || text == "hi" || text.rfind("hi ", 0) == 0)
    return "Hello, " + uid + "!";
  return "I do not know about \"" + question + "\" yet.";
}

wsc::behaviour_actor::behavior_type
bot(wsc::behaviour_actor::stateful_pointer<bot_state> self,
    wsc::messaging_actor messaging, std::chrono::milliseconds timeout) {
  self->state.messaging = std::move(messaging);
  self->state.timeout = timeout;
  return {
      [self](wsc::atom::frame, wsc::frame_context& ctx,
             wsc::json_ptr& frame) -> caf::result<wsc::json_ptr> {
        auto& f = *frame;
        auto& type = f["type"].get_ref<const std::string&>();
        if (type == "bot.ask") {
          auto text = string_field(f, "text");
          if (!text)
            return missing("text");
          return std::make_shared<const json>(
              json{{"type", "bot.answer"},
                   {"text", bot_answer(*text, ctx.sender.uid, ctx.sender.node)},
                   {"node", ctx.sender.node}});
        }
        if (type == "bot.tell") {
          auto to = string_field(f, "to");
          if (!to || !wsc::valid_name(*to))
            return wsc::make_error(wsc::ec::bad_frame,
                                   "field 'to' must be a uid");
          auto text = string_field(f, "text");
          if (!text)
            return missing("text");
          wsc::delivery d;
          d.kind = wsc::delivery_kind::message;
          d.from = "bot";
          d.data = json{{"text", *text}, {"for", ctx.sender.uid}}.dump();
          d.ts = now_ms();
          d.uids = {*to};
          // The client who asked pays for it in its address' store budget.
          d.sender_address = ctx.address;
          // The reply waits for the REGISTRY: a null answer means `ack`.
          auto rp = self->make_response_promise<wsc::json_ptr>();
          self->request(self->state.messaging, self->state.timeout,
                        wsc::atom::send_v, std::move(d))
              .then(
                  [rp](wsc::delivery_report&) mutable {
                    rp.deliver(wsc::json_ptr{});
                  },
                  [rp](caf::error& err) mutable {
                    rp.deliver(std::move(err));
                  });
          return rp;
        }
        return wsc::make_error(wsc::ec::unknown_type,
                               "the bot does not know '" + type + "'");
      },
  };
}

} // namespace example
