#pragma once

// -- The documented options and how each stores its value (config-internal) --

#include "config/options.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wsc::option_table {

/// Stores the text of an option into the options, or says why it cannot.
using setter = std::function<caf::error(options&, const std::string&)>;

/// One documented option: its name, default as shown in --help, meaning and
/// how to store a value.
struct option_spec {
  const char* name;
  const char* default_text;
  const char* help;
  setter set;
};

/// Every option, in the order of --help.
const std::vector<option_spec>& all();

/// The option called `name`, or null.
const option_spec* find(const std::string& name);

/// An error of the option parser: `invalid_argument` with `what`.
caf::error invalid(const std::string& what);

/// The text `invalid` put into `err` (every error of config/ is made by it).
std::string reason_of(const caf::error& err);

std::string trim(std::string s);

/// The trimmed, non-empty items of a comma-separated list.
std::vector<std::string> split_list(const std::string& text);

/// A decimal integer in [min, max].
caf::expected<uint64_t> parse_uint(const std::string& text, uint64_t min,
                                   uint64_t max);

} // namespace wsc::option_table
