#include "flow/inbox_pages.hpp"

#include <algorithm>

namespace wsc {

uint64_t inbox_pages::weight(const stored_message& msg) {
  constexpr uint64_t bookkeeping = 64;
  return msg.data.size() + msg.msg_id.size() + msg.from.size() +
         msg.group.size() + bookkeeping;
}

void inbox_pages::fit(inbox_replay& page) {
  auto& messages = page.messages;
  if (messages.empty())
    return;
  uint64_t bytes = 0;
  size_t kept = 0;
  for (; kept < messages.size(); ++kept) {
    auto next = bytes + weight(messages[kept]);
    if (kept > 0 && next > max_bytes)
      break;
    bytes = next;
  }
  if (kept < messages.size()) {
    messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(kept),
                   messages.end());
    page.more = true;
  }
  auto average = std::max<uint64_t>(bytes / kept, 1);
  count_ = static_cast<uint32_t>(
      std::clamp<uint64_t>(max_bytes / average, 1, max_count));
}

} // namespace wsc
