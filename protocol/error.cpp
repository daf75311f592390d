#include "protocol/error.hpp"

#include <caf/sec.hpp>

namespace wsc {

const char* to_string(ec x) {
  switch (x) {
  case ec::none:
    return "none";
  case ec::bad_json:
    return "bad_json";
  case ec::bad_frame:
    return "bad_frame";
  case ec::unknown_type:
    return "unknown_type";
  case ec::forbidden:
    return "forbidden";
  case ec::not_member:
    return "not_member";
  case ec::rate_limited:
    return "rate_limited";
  case ec::too_many_groups:
    return "too_many_groups";
  case ec::unavailable:
    return "unavailable";
  case ec::internal:
    return "internal";
  case ec::too_large:
    return "too_large";
  case ec::group_full:
    return "group_full";
  }
  return "internal";
}

ec to_ec(const caf::error& err) {
  if (!err)
    return ec::none;
  if (err.category() == ec_category)
    return static_cast<ec>(err.code());
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
    case caf::sec::request_timeout:
    case caf::sec::request_receiver_down:
    case caf::sec::no_route_to_receiving_node:
      return ec::unavailable;
    default:
      break;
    }
  }
  return ec::internal;
}

std::string error_message(const caf::error& err) {
  if (!err)
    return {};
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  if (err.category() == ec_category)
    return to_string(static_cast<ec>(err.code()));
  if (err.category() == caf::atom("system"))
    return to_string(static_cast<caf::sec>(err.code()));
  return caf::to_string(err);
}

} // namespace wsc
