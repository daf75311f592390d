#include "protocol/names.hpp"

#include "protocol/ws_frame.hpp"

#include <algorithm>

namespace wsc {

bool valid_utf8(std::string_view text) {
  return ws::valid_utf8(text);
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128)
    return false;
  return std::none_of(name.begin(), name.end(),
                      [](char ch) {
                        auto c = static_cast<unsigned char>(ch);
                        return c <= 0x20 || c == 0x7F || c == ',';
                      }) &&
         valid_utf8(name);
}

} // namespace wsc
