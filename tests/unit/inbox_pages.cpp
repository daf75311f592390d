#define CAF_SUITE inbox_pages

// The pages in which a connection reads its inbox are bounded in bytes as
// well as in messages.

#include "flow/inbox_pages.hpp"

#include <caf/test/unit_test.hpp>

#include <string>

using namespace wsc;

namespace {

inbox_replay page_of(size_t messages, size_t data_bytes, bool more = false) {
  inbox_replay page;
  page.last_seq = messages;
  page.more = more;
  for (size_t seq = 1; seq <= messages; ++seq) {
    stored_message msg;
    msg.seq = seq;
    msg.msg_id = "m" + std::to_string(seq);
    msg.data = std::string(data_bytes, 'x');
    page.messages.push_back(std::move(msg));
  }
  return page;
}

uint64_t bytes_of(const inbox_replay& page) {
  uint64_t sum = 0;
  for (auto& msg : page.messages)
    sum += inbox_pages::weight(msg);
  return sum;
}

} // namespace

CAF_TEST(a page of small messages is kept whole and the count grows) {
  inbox_pages pages;
  CAF_CHECK_EQUAL(pages.count(), inbox_pages::first_count);
  auto page = page_of(inbox_pages::max_count, 200);
  pages.fit(page);
  CAF_CHECK_EQUAL(page.messages.size(), inbox_pages::max_count);
  CAF_CHECK(!page.more);
  CAF_CHECK_EQUAL(pages.count(), inbox_pages::max_count);
}

CAF_TEST(a page of large messages is cut to the byte budget and marked more) {
  inbox_pages pages;
  auto page = page_of(inbox_pages::max_count, 900 * 1024 / 10);
  pages.fit(page);
  CAF_CHECK_LESS_OR_EQUAL(bytes_of(page), inbox_pages::max_bytes);
  CAF_CHECK_EQUAL(page.messages.size(), 2u);
  CAF_CHECK(page.more);
  CAF_CHECK_EQUAL(page.messages.back().seq, 2u);
  // The next read asks for about what fits.
  CAF_CHECK_EQUAL(pages.count(), 2u);
}

CAF_TEST(a message larger than the budget still makes a page of one) {
  inbox_pages pages;
  auto page = page_of(8, 900 * 1024);
  pages.fit(page);
  CAF_REQUIRE_EQUAL(page.messages.size(), 1u);
  CAF_CHECK_EQUAL(page.messages.front().seq, 1u);
  CAF_CHECK(page.more);
  CAF_CHECK_EQUAL(pages.count(), 1u);
  // Small messages later grow the count again.
  auto small = page_of(1, 100);
  pages.fit(small);
  CAF_CHECK_EQUAL(pages.count(), inbox_pages::max_count);
}

CAF_TEST(an empty page changes nothing) {
  inbox_pages pages;
  auto big = page_of(4, 200 * 1024);
  pages.fit(big);
  auto count = pages.count();
  inbox_replay empty;
  empty.more = true;
  pages.fit(empty);
  CAF_CHECK(empty.more);
  CAF_CHECK_EQUAL(pages.count(), count);
}
