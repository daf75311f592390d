#include "actors/frame_order.hpp"

#include <algorithm>

namespace wsc {

frame_order::step frame_order::on_live(uint64_t seq, const frame_ptr& frame,
                                       size_t hold_limit) {
  if (!open_ || catching_up_) {
    hold(seq, frame, hold_limit);
    return step::hold;
  }
  auto written = frame ? step::write : step::skip;
  if (seq == 1 && last_seq_ > 1) {
    // The uid's inbox expired (inbox-max-age without messages) and started
    // over: its numbering restarts under this long-lived connection.
    last_seq_ = 0;
  }
  if (seq == 0 || !device_)
    return written;
  if (seq == last_seq_ + 1) {
    last_seq_ = seq;
    return written;
  }
  if (seq > last_seq_) {
    hold(seq, frame, hold_limit);
    catching_up_ = true;
    return step::catch_up;
  }
  return step::skip; // written already (by a replay)
}

void frame_order::hold(uint64_t seq, const frame_ptr& frame, size_t limit) {
  if (held_.size() < limit)
    held_.emplace_back(seq, frame); // durable ones are in the inbox too
}

bool frame_order::take(const stored_message& msg) {
  if (msg.seq <= last_seq_)
    return false;
  last_seq_ = msg.seq;
  return true;
}

bool frame_order::on_catch_up_page(const inbox_replay* page) {
  if (page && page->more && !page->messages.empty())
    return true;
  catching_up_ = false;
  return false;
}

std::vector<frame_ptr> frame_order::release_held() {
  auto held = std::move(held_);
  held_.clear();
  std::stable_sort(held.begin(), held.end(),
                   [](auto& x, auto& y) { return x.first < y.first; });
  std::vector<frame_ptr> result;
  result.reserve(held.size());
  for (auto& [seq, frame] : held) {
    if (seq != 0 && device_) {
      if (seq <= last_seq_)
        continue;
      last_seq_ = seq;
    }
    if (frame)
      result.push_back(std::move(frame));
  }
  return result;
}

void frame_order::set_page(std::vector<stored_message> page) {
  replay_page_ = std::move(page);
  replay_head_ = 0;
}

void frame_order::begin_replay(inbox_replay& first) {
  replay_last_ = first.last_seq;
  replay_more_ = first.more && !first.messages.empty();
  replay_after_ =
      first.messages.empty() ? first.cursor : first.messages.back().seq;
  set_page(std::move(first.messages));
}

const stored_message* frame_order::next_replayed() {
  while (replay_head_ < replay_page_.size()) {
    auto& msg = replay_page_[replay_head_++];
    if (take(msg))
      return &msg;
  }
  return nullptr;
}

void frame_order::on_replay_page(inbox_replay& page) {
  // A page whose entries the store dropped as malformed is empty but
  // `more`: the store deleted them, so asking again moves on.
  replay_more_ = page.more && (!page.messages.empty() ||
                               ++replay_empty_pages_ <= max_empty_pages);
  if (!page.messages.empty()) {
    replay_after_ = page.messages.back().seq;
    replay_empty_pages_ = 0;
  }
  replay_last_ = std::max(replay_last_, page.last_seq);
  set_page(std::move(page.messages));
}

std::vector<frame_ptr> frame_order::open(bool complete) {
  if (complete)
    last_seq_ = std::max(last_seq_, replay_last_);
  set_page({});
  replay_more_ = false;
  auto held = release_held();
  open_ = true;
  return held;
}

} // namespace wsc
