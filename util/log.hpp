#pragma once

// Logging through spdlog: one line per event with a timestamp and a level, on
// stderr. CAF's own logger is compiled out in Debian's build.

#include <spdlog/spdlog.h>

#include <string>

namespace wsc::log {

/// Configures the process-wide logger (`debug`, `info`, `warn`, `error`).
void setup(const std::string& level);

template<class... Ts>
void debug(spdlog::format_string_t<Ts...> fmt, Ts&&... xs) {
  spdlog::debug(fmt, std::forward<Ts>(xs)...);
}

template<class... Ts>
void info(spdlog::format_string_t<Ts...> fmt, Ts&&... xs) {
  spdlog::info(fmt, std::forward<Ts>(xs)...);
}

template<class... Ts>
void warn(spdlog::format_string_t<Ts...> fmt, Ts&&... xs) {
  spdlog::warn(fmt, std::forward<Ts>(xs)...);
}

template<class... Ts>
void error(spdlog::format_string_t<Ts...> fmt, Ts&&... xs) {
  spdlog::error(fmt, std::forward<Ts>(xs)...);
}

} // namespace wsc::log
