#include "protocol/json_syntax.hpp"

#include <cmath>
#include <cstdlib>
#include <string>

namespace wsc {

namespace {

/// A recursive-descent check; the recursion is bounded by `max_depth`.
class json_syntax {
public:
  json_syntax(std::string_view text, size_t max_depth)
      : pos_(text.data()), end_(text.data() + text.size()),
        max_depth_(max_depth) {
    // nop
  }

  bool whole_text_is_one_value() {
    skip_space();
    if (!value(0))
      return false;
    skip_space();
    return pos_ == end_;
  }

private:
  bool at(char c) const { return pos_ != end_ && *pos_ == c; }

  bool take(char c) {
    if (!at(c))
      return false;
    ++pos_;
    return true;
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  static bool hex(char c) {
    return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }

  void skip_space() {
    while (pos_ != end_ &&
           (*pos_ == ' ' || *pos_ == '\t' || *pos_ == '\n' || *pos_ == '\r'))
      ++pos_;
  }

  bool value(size_t depth) {
    if (pos_ == end_)
      return false;
    switch (*pos_) {
    case '{':
      return container(depth, '}', true);
    case '[':
      return container(depth, ']', false);
    case '"':
      return string();
    case 't':
      return literal("true");
    case 'f':
      return literal("false");
    case 'n':
      return literal("null");
    default:
      return number();
    }
  }

  /// An object (`keys`) or an array, from its opening bracket on.
  bool container(size_t depth, char close, bool keys) {
    if (++depth > max_depth_)
      return false;
    ++pos_;
    skip_space();
    if (take(close))
      return true;
    for (;;) {
      if (keys) {
        if (!string())
          return false;
        skip_space();
        if (!take(':'))
          return false;
        skip_space();
      }
      if (!value(depth))
        return false;
      skip_space();
      if (take(close))
        return true;
      if (!take(','))
        return false;
      skip_space();
    }
  }

  bool string() {
    if (!take('"'))
      return false;
    while (pos_ != end_) {
      auto c = static_cast<unsigned char>(*pos_++);
      if (c == '"')
        return true;
      if (c < 0x20)
        return false; // control characters must be escaped
      if (c != '\\')
        continue;
      if (pos_ == end_)
        return false;
      switch (*pos_++) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        break;
      case 'u':
        if (!unicode_escape())
          return false;
        break;
      default:
        return false;
      }
    }
    return false; // unterminated
  }

  /// The 4 hex digits after `\u` (read into `unit`).
  bool hex4(unsigned& unit) {
    if (end_ - pos_ < 4)
      return false;
    unit = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *pos_++;
      if (!hex(c))
        return false;
      unsigned value = digit(c)                 ? c - '0'
                       : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                : c - 'A' + 10;
      unit = unit * 16 + value;
    }
    return true;
  }

  /// A `\u` escape after its `u`: a UTF-16 surrogate must be a high one
  /// followed by an escaped low one, as nlohmann (and so a client's frame)
  /// requires.
  bool unicode_escape() {
    unsigned unit = 0;
    if (!hex4(unit))
      return false;
    if (unit >= 0xDC00 && unit <= 0xDFFF)
      return false; // a low surrogate alone
    if (unit < 0xD800 || unit > 0xDBFF)
      return true;
    unsigned low = 0;
    return take('\\') && take('u') && hex4(low) && low >= 0xDC00 &&
           low <= 0xDFFF;
  }

  bool literal(std::string_view word) {
    if (static_cast<size_t>(end_ - pos_) < word.size() ||
        std::string_view{pos_, word.size()} != word)
      return false;
    pos_ += word.size();
    return true;
  }

  bool digits() {
    if (pos_ == end_ || !digit(*pos_))
      return false;
    while (pos_ != end_ && digit(*pos_))
      ++pos_;
    return true;
  }

  bool number() {
    auto start = pos_;
    take('-');
    auto integer = pos_;
    if (take('0')) {
      // no leading zeros
    } else if (!digits()) {
      return false;
    }
    auto integer_digits = pos_ - integer;
    if (take('.') && !digits())
      return false;
    bool exponent = take('e') || take('E');
    if (exponent) {
      if (!take('+'))
        take('-');
      if (!digits())
        return false;
    }
    // A number beyond a double's range is refused, as nlohmann (and so a
    // client's frame) does; only an exponent or 309 digits get there.
    if (exponent || integer_digits > 308) {
      std::string token{start, pos_};
      if (std::isinf(std::strtod(token.c_str(), nullptr)))
        return false;
    }
    return true;
  }

  const char* pos_;
  const char* end_;
  size_t max_depth_;
};

} // namespace

bool json_value_ok(std::string_view text, size_t max_depth) {
  return json_syntax{text, max_depth}.whole_text_is_one_value();
}

} // namespace wsc
