#define CAF_SUITE names

// Names (uids, groups, devices, ids) and the UTF-8 they must be: the checks
// every client string passes before anything uses it (protocol/names).

#include "protocol/names.hpp"

#include <caf/test/unit_test.hpp>

#include <string>

using namespace wsc;

CAF_TEST(valid_utf8 accepts well formed text only) {
  CAF_CHECK(valid_utf8(""));
  CAF_CHECK(valid_utf8("plain ascii"));
  CAF_CHECK(valid_utf8("zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80"));
  CAF_CHECK(!valid_utf8("\xff"));
  CAF_CHECK(!valid_utf8("\xc3\x28"));         // bad continuation
  CAF_CHECK(!valid_utf8("\xc3"));             // truncated
  CAF_CHECK(!valid_utf8("\xc0\xaf"));         // overlong '/'
  CAF_CHECK(!valid_utf8("\xe0\x80\xaf"));     // overlong, 3 bytes
  CAF_CHECK(!valid_utf8("\xed\xa0\x80"));     // UTF-16 surrogate
  CAF_CHECK(!valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
  CAF_CHECK(!valid_utf8("\xf5\x80\x80\x80"));
}

CAF_TEST(valid_name needs utf8 and the documented charset) {
  CAF_CHECK(valid_name("alice"));
  CAF_CHECK(valid_name("acme:bob"));
  CAF_CHECK(valid_name("zo\xc3\xab"));
  CAF_CHECK(!valid_name(""));
  CAF_CHECK(!valid_name(std::string(129, 'a')));
  CAF_CHECK(!valid_name("a b"));
  CAF_CHECK(!valid_name("a,b"));
  CAF_CHECK(!valid_name(std::string{"a\0b", 3}));
  CAF_CHECK(!valid_name("\xff"));
  CAF_CHECK(!valid_name("\xc3\x28"));
}
