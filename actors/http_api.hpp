#pragma once

#include "actors/actors.hpp"
#include "actors/cluster_event_log.hpp"
#include "actors/message_settings.hpp"
#include "actors/metrics.hpp"
#include "actors/node_health.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace wsc {

/// What the HTTP API needs of a request.
struct http_request {
  std::string method;
  std::string target;
  /// The `Authorization` header.
  std::string authorization;
  std::string body;
};

/// The answer to an HTTP request.
struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Readable by pages of other origins (the dashboard polls every node).
  bool cors = false;
};

/// A request and the callback that writes its answer; the callback may be
/// called from any thread, exactly once.
struct http_exchange {
  http_request request;
  std::function<void(http_response)> respond;
};

/// The settings of the HTTP_API.
struct http_api_config {
  /// This node's id (the local part of /api/stats).
  std::string node_id;
  /// `api-key`: the bearer token /api/ requests need (empty: none).
  std::string api_key;
  std::chrono::milliseconds request_timeout{5000};
  message_settings messages;
};

/// The state of the HTTP_API actor.
struct http_api_state {
  static inline const char* name = "http-api";

  http_api_config cfg;
  registry_actor registry;
  state_store_actor store;
  /// /healthz and /metrics tell it.
  node_health_ptr health;
  std::shared_ptr<node_metrics> metrics;
  /// GET /api/events.
  std::shared_ptr<const cluster_event_log> cluster_events;
};

/// Compares two secrets in time that depends only on their lengths.
bool secrets_equal(const std::string& a, const std::string& b);

/// Whether a request to /api/ may go on: no `api-key` is set, or its
/// `Authorization` header carries it as a bearer token. Checked by the HTTP
/// session once the header is read (a request without the key never gets
/// its body read) and by the HTTP_API actor.
bool api_key_accepted(const std::string& api_key,
                      const std::string& authorization);

/// The answer to a request for `path` (its target without the query) with
/// the `Authorization` header `authorization` that needs nothing of an
/// actor, else nullopt: a path that
/// is not the API's, /healthz or /metrics (404) and an /api/ request without
/// the key (401). The HTTP session answers these on the socket:
/// queued behind the one HTTP_API actor, 34,000 unauthorized requests a
/// second from one address took a keyed caller's p99 from 4 to 66 ms
/// (helper-40's probe).
std::optional<http_response>
answer_without_actor(const std::string& path, const std::string& authorization,
                     const std::string& api_key);

/// Spawn arguments: the settings, the REGISTRY, the state store (for
/// /api/nodes), and what /healthz, /metrics and /api/events report.
http_api_actor::behavior_type
http_api(http_api_actor::stateful_pointer<http_api_state> self,
         http_api_config cfg, registry_actor registry, state_store_actor store,
         node_health_ptr health, std::shared_ptr<node_metrics> metrics,
         std::shared_ptr<const cluster_event_log> cluster_events);

} // namespace wsc
