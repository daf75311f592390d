#include "flow/frame_order.hpp"

#include <algorithm>
#include <functional>

namespace wsc {

uint64_t frame_order::msg_id_hash(std::string_view msg_id) {
  // Never 0, which stands for "no seq 1 seen".
  return std::hash<std::string_view>{}(msg_id) | 1;
}

bool frame_order::restarts(uint64_t seq, uint64_t id_hash) const {
  if (seq != 1 || !device_)
    return false;
  if (first_id_hash_ != 0)
    return id_hash != first_id_hash_;
  return last_seq_ > 1;
}

void frame_order::advance(uint64_t seq, uint64_t id_hash) {
  last_seq_ = seq;
  if (seq == 1)
    first_id_hash_ = id_hash;
}

frame_order::step frame_order::on_live(uint64_t seq, const frame_ptr& frame,
                                       hold_limit limit,
                                       std::string_view msg_id) {
  auto id_hash = seq == 1 ? msg_id_hash(msg_id) : 0;
  if (!open_ || catching_up_) {
    hold(seq, id_hash, frame, limit);
    return step::hold;
  }
  auto written = frame ? step::write : step::skip;
  if (restarts(seq, id_hash))
    last_seq_ = 0; // the numbering restarts under this connection
  if (seq == 0 || !device_)
    return written;
  if (seq == last_seq_ + 1) {
    advance(seq, id_hash);
    return written;
  }
  if (seq > last_seq_) {
    hold(seq, id_hash, frame, limit);
    catching_up_ = true;
    return step::catch_up;
  }
  return step::skip; // written already (by a replay)
}

void frame_order::hold(uint64_t seq, uint64_t id_hash, const frame_ptr& frame,
                       hold_limit limit) {
  auto bytes = frame ? frame->size() : 0;
  // Beyond either limit the frame is dropped: durable ones are in the inbox
  // too.
  if (held_.size() >= limit.frames || held_bytes_ + bytes > limit.bytes)
    return;
  held_.push_back(held_frame{seq, id_hash, frame});
  held_bytes_ += bytes;
}

bool frame_order::take(const stored_message& msg) {
  if (msg.seq <= last_seq_)
    return false;
  advance(msg.seq, msg.seq == 1 ? msg_id_hash(msg.msg_id) : 0);
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
  held_bytes_ = 0;
  // The frames that arrived after the inbox started over (in arrival
  // order) belong to the new numbering.
  auto restart = std::find_if(held.begin(), held.end(), [this](auto& h) {
    return restarts(h.seq, h.id_hash);
  });
  std::vector<frame_ptr> result;
  result.reserve(held.size());
  release_in_order(held.begin(), restart, result);
  if (restart != held.end()) {
    last_seq_ = 0;
    first_id_hash_ = 0;
    release_in_order(restart, held.end(), result);
  }
  return result;
}

void frame_order::release_in_order(held_list::iterator first,
                                   held_list::iterator last,
                                   std::vector<frame_ptr>& out) {
  std::stable_sort(first, last, [](auto& x, auto& y) { return x.seq < y.seq; });
  for (auto i = first; i != last; ++i) {
    if (i->seq != 0 && device_) {
      if (i->seq <= last_seq_)
        continue;
      advance(i->seq, i->id_hash);
    }
    if (i->frame)
      out.push_back(std::move(i->frame));
  }
}

void frame_order::set_page(std::vector<stored_message> page) {
  replay_page_ = std::move(page);
  replay_head_ = 0;
}

void frame_order::begin_replay(inbox_replay& first) {
  replay_last_ = first.last_seq;
  replay_after_ = first.cursor;
  replay_start_ = first.cursor;
  on_replay_page(first);
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
