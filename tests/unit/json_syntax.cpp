#define CAF_SUITE json_syntax

// The one-pass JSON syntax check agrees with nlohmann's parser (and the
// depth limit) on hand-picked cases and on many random texts.

#include "protocol/json_syntax.hpp"

#include "protocol/frames.hpp"

#include <caf/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include <random>
#include <string>

using namespace wsc;

namespace {

/// A verdict with its text, so that a failed check shows which text.
std::string verdict(const std::string& text, bool ok) {
  return "'" + text + "' is " + (ok ? "JSON" : "no JSON");
}

bool reference(const std::string& text) {
  return frames::json_depth_ok(text) && nlohmann::json::accept(text);
}

bool checked(const std::string& text) {
  return json_value_ok(text, frames::max_json_depth);
}

} // namespace

CAF_TEST(values and non - values) {
  for (auto text :
       {"0", "-0", "1.5e+3", "-12.25E-2", "\"\"", "\"a\\u00e9\\n\"", "true",
        "false", "null", "[]", "{}", " [1, {\"a\": [null, false]}] ",
        "{\"k\":\"v\",\"n\":{\"m\":[]}}", "\"\xc3\xa9\"", "1e-400",
        "\"\\ud83d\\ude00\"", "18446744073709551616", "1e308"})
    CAF_CHECK_EQUAL(verdict(text, checked(text) && reference(text)),
                    verdict(text, true));
  for (auto text : {"",
                    " ",
                    "01",
                    "1.",
                    ".5",
                    "1e",
                    "-",
                    "+1",
                    "tru",
                    "nul",
                    "[1,]",
                    "{\"a\"}",
                    "{\"a\":}",
                    "{a:1}",
                    "[1 2]",
                    "\"\\x\"",
                    "\"\\u12G4\"",
                    "\"a",
                    "\"\t\"",
                    "1 2",
                    "[]]",
                    "{}}",
                    "NaN",
                    "[",
                    "}",
                    "1e400",
                    "-1E+400",
                    "[1e999]",
                    "\"\\ud83d\"",
                    "\"\\ude00\"",
                    "\"\\ud83d\\\\\"",
                    "\"\\ud83d\\u0041\""})
    CAF_CHECK_EQUAL(verdict(text, checked(text) || reference(text)),
                    verdict(text, false));
}

CAF_TEST(the depth limit is the client frames one) {
  auto nested = [](size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  CAF_CHECK(checked(nested(frames::max_json_depth)));
  CAF_CHECK(!checked(nested(frames::max_json_depth + 1)));
  CAF_CHECK(!checked(nested(100000))); // no deep recursion either
}

CAF_TEST(random texts get the same verdict as nlohmann) {
  // Texts made of JSON's punctuation, literals' letters and a few digits,
  // so that many are valid and most are almost valid.
  static constexpr std::string_view alphabet = "{}[]\":, 01-.eE+truefalsn\\u";
  std::mt19937 rng{20261205};
  size_t valid = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string text;
    auto length = rng() % 14;
    for (size_t k = 0; k < length; ++k)
      text += alphabet[rng() % alphabet.size()];
    auto expected = reference(text);
    valid += expected;
    if (checked(text) != expected)
      CAF_FAIL("disagree on '" << text << "': nlohmann says " << expected);
  }
  CAF_MESSAGE(valid << " of 200000 random texts are JSON");
  CAF_CHECK_GREATER(valid, 1000u);
}
