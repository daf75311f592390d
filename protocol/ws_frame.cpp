#include "protocol/ws_frame.hpp"

#include <algorithm>
#include <cstring>

namespace wsc::ws {

namespace {

bool is_control(uint8_t op) {
  return (op & 0x8) != 0;
}

uint64_t read_big_endian(const uint8_t* bytes, size_t n) {
  uint64_t value = 0;
  for (size_t i = 0; i < n; ++i)
    value = (value << 8) | bytes[i];
  return value;
}

/// A control frame's payload limit (RFC 6455 5.5).
constexpr size_t max_control_payload = 125;

} // namespace

bool valid_close_code(uint16_t code) {
  switch (code) {
  case 1000:
  case 1001:
  case 1002:
  case 1003:
  case 1007:
  case 1008:
  case 1009:
  case 1010:
  case 1011:
  case 1012:
  case 1013:
    return true;
  default:
    // 1004-1006 and 1014-2999 are reserved, below 1000 unused.
    return code >= 3000;
  }
}

bool utf8_validator::feed(const unsigned char* data, size_t size) {
  size_t i = 0;
  while (i < size) {
    if (need_ == 0) {
      // Runs of ASCII, eight bytes at a time.
      while (i + 8 <= size) {
        uint64_t word;
        std::memcpy(&word, data + i, 8);
        if ((word & 0x8080808080808080ULL) != 0)
          break;
        i += 8;
      }
      if (i == size)
        break;
    }
    auto c = data[i++];
    if (need_ > 0) {
      if (c < lo_ || c > hi_)
        return false;
      lo_ = 0x80;
      hi_ = 0xBF;
      --need_;
      continue;
    }
    if (c < 0x80)
      continue;
    if (c >= 0xC2 && c <= 0xDF) {
      need_ = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need_ = 2;
      if (c == 0xE0)
        lo_ = 0xA0; // overlong
      else if (c == 0xED)
        hi_ = 0x9F; // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      need_ = 3;
      if (c == 0xF0)
        lo_ = 0x90; // overlong
      else if (c == 0xF4)
        hi_ = 0x8F; // above U+10FFFF
    } else {
      return false;
    }
  }
  return true;
}

bool valid_utf8(std::string_view text) {
  utf8_validator validator;
  return validator.feed(reinterpret_cast<const unsigned char*>(text.data()),
                        text.size()) &&
         validator.complete();
}

size_t encode_header(opcode op, uint64_t payload_size, uint8_t (&out)[10]) {
  out[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(op));
  size_t extra = 0;
  if (payload_size < 126) {
    out[1] = static_cast<uint8_t>(payload_size);
  } else if (payload_size <= 0xFFFF) {
    out[1] = 126;
    extra = 2;
  } else {
    out[1] = 127;
    extra = 8;
  }
  for (size_t i = 0; i < extra; ++i)
    out[2 + i] = static_cast<uint8_t>(payload_size >> (8 * (extra - 1 - i)));
  return 2 + extra;
}

std::string close_payload(uint16_t code, std::string_view reason) {
  auto cut = std::min(reason.size(), max_control_payload - 2);
  // Never end inside a character: back up to the start of the one cut.
  while (cut > 0 && cut < reason.size() &&
         (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80)
    --cut;
  std::string out;
  out.reserve(2 + cut);
  out += static_cast<char>(code >> 8);
  out += static_cast<char>(code & 0xFF);
  out.append(reason.data(), cut);
  return out;
}

frame_events::~frame_events() {
  // nop
}

bool frame_events::admit_frame(opcode, uint64_t) {
  return true;
}

frame_reader::frame_reader(uint64_t max_message_bytes,
                           std::string_view binary_prefix)
    : max_message_bytes_(max_message_bytes), binary_prefix_(binary_prefix) {
  // nop
}

frame_reader::result frame_reader::fail(result r, uint16_t code,
                                        const char* reason) {
  r.fail_code = code;
  r.fail_reason = reason;
  closed_ = true;
  return r;
}

frame_reader::result frame_reader::feed(const char* data, size_t size,
                                        frame_events& events) {
  result r;
  size_t i = 0;
  const char* reason = "";
  while (i < size && !closed_) {
    if (!in_payload_) {
      // The header: 2 bytes, then as many as they announce.
      size_t need = 2;
      bool sized = header_size_ >= 2;
      if (sized) {
        auto len7 = header_[1] & 0x7F;
        need += (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
        need += (header_[1] & 0x80) ? 4 : 0;
      }
      auto n = std::min(need - header_size_, size - i);
      std::memcpy(header_ + header_size_, data + i, n);
      header_size_ = static_cast<uint8_t>(header_size_ + n);
      i += n;
      if (header_size_ < need)
        continue; // the header goes on in the next read
      if (!sized)
        continue; // the first two bytes tell how long the header is
      if (auto code = start_frame(reason)) {
        r.consumed = i;
        return fail(r, code, reason);
      }
      if (frame_op_ != opcode::text && frame_op_ != opcode::binary &&
          frame_op_ != opcode::close &&
          !events.admit_frame(frame_op_, remaining_)) {
        r.consumed = i;
        return fail(r, close_code::policy, "rate limit exceeded");
      }
    }
    auto n = static_cast<size_t>(std::min<uint64_t>(remaining_, size - i));
    if (n > 0) {
      if (is_control(static_cast<uint8_t>(frame_op_))) {
        auto at = control_.size();
        control_.resize(at + n);
        unmask(control_.data() + at, data + i, n);
      } else if (auto code = take_data(data + i, n, reason)) {
        r.consumed = i + n;
        return fail(r, code, reason);
      }
      i += n;
      remaining_ -= n;
    }
    if (remaining_ > 0)
      break; // the frame goes on in the next read
    in_payload_ = false;
    if (is_control(static_cast<uint8_t>(frame_op_))) {
      if (!in_message_)
        ++completed_;
      finish_control(events, r);
      if (r.fail_code != 0) {
        r.consumed = i;
        return r;
      }
      continue;
    }
    if (!fin_)
      continue;
    in_message_ = false;
    ++completed_;
    if (!binary_ && !utf8_.complete()) {
      r.consumed = i;
      return fail(r, close_code::bad_payload, "invalid UTF-8");
    }
    bool more = events.on_message(binary_, message_);
    // Moved from, or not: either way no buffer stays with an idle reader.
    std::string{}.swap(message_);
    if (!more) {
      r.consumed = i;
      return r;
    }
  }
  r.consumed = i;
  return r;
}

uint16_t frame_reader::start_frame(const char*& reason) {
  header_size_ = 0;
  auto op = static_cast<uint8_t>(header_[0] & 0x0F);
  bool fin = (header_[0] & 0x80) != 0;
  bool rsv = (header_[0] & 0x70) != 0;
  auto len7 = static_cast<uint8_t>(header_[1] & 0x7F);
  // The same checks in the same order as Beast (stream_impl parse_fh).
  switch (static_cast<opcode>(op)) {
  case opcode::text:
  case opcode::binary:
    if (in_message_)
      return reason = "new message before the last one ended",
             close_code::protocol_error;
    break;
  case opcode::continuation:
    if (!in_message_)
      return reason = "continuation without a message",
             close_code::protocol_error;
    break;
  case opcode::close:
  case opcode::ping:
  case opcode::pong:
    if (!fin)
      return reason = "fragmented control frame", close_code::protocol_error;
    if (len7 > max_control_payload)
      return reason = "control frame too long", close_code::protocol_error;
    break;
  default:
    return reason = "reserved opcode", close_code::protocol_error;
  }
  if (rsv)
    return reason = "reserved bits set", close_code::protocol_error;
  if ((header_[1] & 0x80) == 0)
    return reason = "unmasked frame", close_code::protocol_error;
  uint64_t len = len7;
  size_t at = 2;
  if (len7 == 126) {
    len = read_big_endian(header_ + 2, 2);
    at = 4;
    if (len < 126)
      return reason = "length not minimally encoded",
             close_code::protocol_error;
  } else if (len7 == 127) {
    len = read_big_endian(header_ + 2, 8);
    at = 10;
    if (len < 65536)
      return reason = "length not minimally encoded",
             close_code::protocol_error;
  }
  std::memcpy(mask_, header_ + at, 4);
  mask_at_ = 0;
  frame_op_ = static_cast<opcode>(op);
  if (!is_control(op)) {
    if (frame_op_ != opcode::continuation) {
      in_message_ = true;
      binary_ = frame_op_ == opcode::binary;
      message_size_ = 0;
      utf8_.reset();
      if (binary_)
        message_.assign(binary_prefix_.data(), binary_prefix_.size());
    }
    if (max_message_bytes_ != 0 &&
        (len > max_message_bytes_ || message_size_ > max_message_bytes_ - len))
      return reason = "message too big", close_code::too_big;
    message_size_ += len;
    fin_ = fin;
  }
  remaining_ = len;
  in_payload_ = true;
  return 0;
}

uint16_t frame_reader::take_data(const char* data, size_t n,
                                 const char*& reason) {
  auto at = message_.size();
  message_.resize(at + n);
  unmask(message_.data() + at, data, n);
  if (!binary_ &&
      !utf8_.feed(reinterpret_cast<const unsigned char*>(message_.data() + at),
                  n))
    return reason = "invalid UTF-8", close_code::bad_payload;
  return 0;
}

void frame_reader::finish_control(frame_events& events, result& r) {
  std::string payload;
  payload.swap(control_);
  switch (frame_op_) {
  case opcode::ping:
    events.on_ping(payload);
    break;
  case opcode::close: {
    if (payload.empty()) {
      closed_ = true;
      events.on_close(close_code::no_status, {});
      break;
    }
    auto bytes = reinterpret_cast<const uint8_t*>(payload.data());
    auto code = payload.size() < 2
                    ? uint16_t{0}
                    : static_cast<uint16_t>(read_big_endian(bytes, 2));
    std::string_view text{payload};
    if (!valid_close_code(code)) {
      r = fail(r, close_code::protocol_error, "invalid close code");
    } else if (!valid_utf8(text.substr(2))) {
      r = fail(r, close_code::protocol_error, "invalid UTF-8 in close reason");
    } else {
      closed_ = true;
      events.on_close(code, text.substr(2));
    }
    break;
  }
  default:
    break; // a pong: nothing to do
  }
  // control_ is empty again and holds no buffer: that went with `payload`.
}

void frame_reader::unmask(char* out, const char* in, size_t n) {
  for (size_t k = 0; k < n; ++k)
    out[k] = static_cast<char>(in[k] ^ mask_[(mask_at_ + k) & 3]);
  mask_at_ = static_cast<uint8_t>((mask_at_ + n) & 3);
}

} // namespace wsc::ws
