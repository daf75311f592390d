#define CAF_SUITE http_api

// The HTTP_API actor survives an exception while answering, and /healthz
// reports a long-lived actor that failed.

#include "actors/http_api.hpp"

#include "adapters/memory_store.hpp"
#include "fixture.hpp"

#include <caf/test/dsl.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace wsc;

namespace {

/// An exchange whose callback records the answers; it throws on the first
/// `throws` of them, like a callback whose writing fails.
struct recorded_exchange {
  std::shared_ptr<std::vector<unsigned>> statuses =
      std::make_shared<std::vector<unsigned>>();

  http_exchange_ptr make(std::string target, int throws) {
    auto ex = std::make_shared<http_exchange>();
    ex->request.method = "GET";
    ex->request.target = std::move(target);
    auto left = std::make_shared<int>(throws);
    ex->respond = [statuses = statuses, left](http_response res) {
      statuses->push_back(res.status);
      if ((*left)-- > 0)
        throw std::runtime_error("write failed");
    };
    return ex;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(http_api_tests, test::node_fixture)

CAF_TEST(an exception in the HTTP API answers 500 and the actor lives on) {
  auto store = track(sys.spawn(memory_store, size_t{10}, int64_t{1000}));
  auto api = track(sys.spawn(http_api, settings::http_api(opts, who), registry,
                             store, health, metrics, cluster_events));
  recorded_exchange rec;
  caf::anon_send(api, rec.make("/healthz", 1));
  run();
  CAF_CHECK_EQUAL(*rec.statuses, std::vector<unsigned>({200u, 500u}));
  CAF_CHECK_EQUAL(metrics->internal_failures.load(), 1u);
  rec.statuses->clear();
  caf::anon_send(api, rec.make("/healthz", 0));
  run();
  CAF_CHECK_EQUAL(*rec.statuses, std::vector<unsigned>({200u}));
}

CAF_TEST(healthz is 503 once a long - lived actor failed) {
  auto store = track(sys.spawn(memory_store, size_t{10}, int64_t{1000}));
  auto api = track(sys.spawn(http_api, settings::http_api(opts, who), registry,
                             store, health, metrics, cluster_events));
  health->failed_actor = "registry";
  recorded_exchange rec;
  caf::anon_send(api, rec.make("/healthz", 0));
  run();
  CAF_CHECK_EQUAL(*rec.statuses, std::vector<unsigned>({503u}));
}

CAF_TEST_FIXTURE_SCOPE_END()
