#include "app/node_settings.hpp"

namespace wsc::settings {

message_settings messages(const options& opts) {
  message_settings result;
  result.volatile_types = opts.volatile_types;
  result.max_fanout_bytes = opts.max_fanout_bytes;
  result.members_limit = opts.members_limit;
  result.max_message_bytes = opts.max_message_bytes;
  return result;
}

registry_config registry(const options& opts, const node_identity& who,
                         bool custom_store) {
  registry_config result;
  result.who = who;
  result.custom_store = custom_store;
  result.request_timeout = opts.request_timeout;
  result.idempotency_window = opts.idempotency_window;
  result.stored_bytes_rate = opts.stored_bytes_rate;
  result.stored_bytes_kept = opts.stored_bytes_kept;
  result.stored_bytes_rate_per_address = opts.stored_bytes_rate_per_address;
  result.stored_bytes_kept_per_address = opts.stored_bytes_kept_per_address;
  result.inbox_max_age = opts.inbox_max_age;
  result.max_fanout_bytes = opts.max_fanout_bytes;
  result.send_queue_limit = opts.send_queue_limit;
  result.send_queue_bytes = opts.send_queue_bytes;
  result.max_resumes_per_uid = opts.max_resumes_per_uid;
  result.max_groups = opts.max_groups;
  result.members_limit = opts.members_limit;
  return result;
}

peer_config peer(const options& opts, const node_identity& who) {
  return peer_config{who, opts.request_timeout};
}

discovery_config discovery(const options& opts, const node_identity& who,
                           bool clustered) {
  discovery_config result;
  result.who = who;
  result.listen = opts.listen.to_string();
  result.clustered = clustered;
  result.heartbeat = opts.heartbeat;
  result.node_timeout = opts.node_timeout;
  result.request_timeout = opts.request_timeout;
  return result;
}

builtins_config builtins(const options& opts) {
  builtins_config result;
  result.messages = messages(opts);
  result.client_broadcast = opts.client_broadcast;
  result.group_join = opts.group_join;
  result.auth = opts.auth;
  result.jwt_secret = opts.jwt_secret;
  result.jwt_audience = opts.jwt_audience;
  result.jwt_issuer = opts.jwt_issuer;
  return result;
}

http_api_config http_api(const options& opts, const node_identity& who) {
  http_api_config result;
  result.node_id = who.id;
  result.api_key = opts.api_key;
  result.request_timeout = opts.request_timeout;
  result.messages = messages(opts);
  return result;
}

webhook_config webhook(const options& opts) {
  webhook_config result;
  result.url = opts.webhook_url;
  result.secret = opts.webhook_secret;
  result.events = opts.webhook_events;
  result.ca = opts.webhook_ca;
  result.retry_base = opts.webhook_retry_base;
  result.retry_window = opts.webhook_retry_window;
  result.coalesce_from = opts.webhook_coalesce_from;
  return result;
}

unread_config unread(const options& opts) {
  unread_config result;
  result.after = opts.unread_after;
  result.request_timeout = opts.request_timeout;
  return result;
}

} // namespace wsc::settings
