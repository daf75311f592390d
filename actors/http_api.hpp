#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"

#include <functional>
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

/// The state of the HTTP_API actor.
struct http_api_state {
  static inline const char* name = "http-api";

  node_context_ptr node;
  state_store_actor store;
};

/// Compares two secrets in time that depends only on their lengths.
bool secrets_equal(const std::string& a, const std::string& b);

/// Whether a request to /api/ may go on: no `api-key` is set, or its
/// `Authorization` header carries it as a bearer token. Checked by the HTTP
/// session once the header is read (a request without the key never gets
/// its body read) and by the HTTP_API actor.
bool api_key_accepted(const options& opts, const std::string& authorization);

/// Spawn arguments: the node and its state store (for /api/nodes).
http_api_actor::behavior_type
http_api(http_api_actor::stateful_pointer<http_api_state> self,
         node_context_ptr node, state_store_actor store);

} // namespace wsc
