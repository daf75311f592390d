#pragma once

// Redis replies built by hand, as hiredis builds them (heap objects freed
// by freeReplyObject), for the tests of the STORE's reply readers and
// request steps.

#include <hiredis/hiredis.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string_view>

namespace wsc::test {

inline redisReply* new_reply(int type) {
  auto r = static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)));
  r->type = type;
  return r;
}

/// A string (or status, or error) reply holding `text`, NUL bytes included.
inline redisReply* str(std::string_view text, int type = REDIS_REPLY_STRING) {
  auto r = new_reply(type);
  r->str = static_cast<char*>(std::malloc(text.size() + 1));
  std::memcpy(r->str, text.data(), text.size());
  r->str[text.size()] = '\0';
  r->len = text.size();
  return r;
}

inline redisReply* num(long long n) {
  auto r = new_reply(REDIS_REPLY_INTEGER);
  r->integer = n;
  return r;
}

inline redisReply* nil() {
  return new_reply(REDIS_REPLY_NIL);
}

inline redisReply* arr(std::initializer_list<redisReply*> xs) {
  auto r = new_reply(REDIS_REPLY_ARRAY);
  r->elements = xs.size();
  r->element = static_cast<redisReply**>(
      std::calloc(xs.size() == 0 ? 1 : xs.size(), sizeof(redisReply*)));
  size_t i = 0;
  for (auto x : xs)
    r->element[i++] = x;
  return r;
}

} // namespace wsc::test
