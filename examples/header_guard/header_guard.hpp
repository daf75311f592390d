#pragma once

// A handshake middleware that turns away WebSocket upgrade requests carrying
// a given header, with an HTTP status of its choice:
//
//   GET /ws?uid=x  X-Scanner: yes   ->  403 "scanners are not welcome here"

#include "middleware/middleware.hpp"

#include <optional>
#include <string>

namespace example {

/// Rejects every upgrade request that carries `header` (any value).
/// Stateless after construction, so safe on every I/O thread.
class header_guard : public wsc::handshake_middleware {
public:
  header_guard(std::string header, unsigned status, std::string reason);

  std::optional<wsc::http_rejection>
  before(wsc::handshake_context& ctx) override;

private:
  std::string header_; // lower case, as handshake_request keys them
  wsc::http_rejection rejection_;
};

} // namespace example
