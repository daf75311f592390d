#include "header_guard.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

namespace example {

header_guard::header_guard(std::string header, unsigned status,
                           std::string reason)
    : header_(std::move(header)), rejection_{status, std::move(reason)} {
  std::transform(header_.begin(), header_.end(), header_.begin(),
                 [](unsigned char c) { return std::tolower(c); });
}

std::optional<wsc::http_rejection>
header_guard::before(wsc::handshake_context& ctx) {
  if (ctx.request.headers.count(header_) > 0)
    return rejection_;
  return std::nullopt;
}

} // namespace example
