#include "actors/metrics.hpp"

#include <sstream>

namespace wsc {

void node_metrics::count_rejection(unsigned status) {
  switch (status) {
  case 401:
    ++rejected_401;
    break;
  case 403:
    ++rejected_403;
    break;
  case 503:
    ++rejected_503;
    break;
  default:
    ++rejected_400;
  }
}

void node_metrics::count_error(ec code) {
  auto index = static_cast<size_t>(code);
  if (index < errors.size())
    ++errors[index];
}

void node_metrics::count_frame(const std::string& type) {
  size_t i = 0;
  while (i < counted_types.size() && type != counted_types[i])
    ++i;
  ++frames_in_by_type[i];
}

void node_metrics::observe_store_rtt(double ms) {
  std::lock_guard guard{peers_mtx_};
  for (size_t i = 0; i < rtt_buckets_ms.size(); ++i)
    if (ms <= rtt_buckets_ms[i])
      ++rtt_counts_[i];
  ++rtt_count_;
  rtt_sum_ms_ += ms;
}

void node_metrics::set_peer_heartbeat_age(const std::string& peer,
                                          int64_t age_ms) {
  std::lock_guard guard{peers_mtx_};
  heartbeat_age_ms_[peer] = age_ms;
}

void node_metrics::forget_peer(const std::string& peer) {
  std::lock_guard guard{peers_mtx_};
  heartbeat_age_ms_.erase(peer);
}

node_metrics::peer_traffic& node_metrics::traffic_of(const std::string& peer) {
  // Peer names come from the wire: past a bound, unknown ones share a series
  // so that forged origins cannot grow /metrics without end.
  constexpr size_t max_peer_series = 256;
  if (auto i = peers_.find(peer); i != peers_.end())
    return i->second;
  return peers_[peers_.size() < max_peer_series ? peer : "other"];
}

void node_metrics::count_remote(const std::string& peer, size_t items) {
  std::lock_guard guard{peers_mtx_};
  auto& t = traffic_of(peer);
  ++t.batches_out;
  t.items_out += items;
}

void node_metrics::count_remote_in(const std::string& peer, size_t items) {
  std::lock_guard guard{peers_mtx_};
  auto& t = traffic_of(peer);
  ++t.batches_in;
  t.items_in += items;
}

namespace {

void family(std::ostringstream& out, const char* name, const char* type,
            const char* help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type
      << '\n';
}

} // namespace

std::string node_metrics::render(uint64_t connections, bool draining,
                                 bool store_healthy) const {
  std::ostringstream out;
  render_node(out, connections, draining, store_healthy);
  render_deliveries(out);
  render_failures(out);
  render_peers(out);
  return out.str();
}

void node_metrics::render_node(std::ostringstream& out, uint64_t connections,
                               bool draining, bool store_healthy) const {
  family(out, "wscluster_connections", "gauge", "Open WebSocket connections.");
  out << "wscluster_connections " << connections << '\n';
  family(out, "wscluster_draining", "gauge", "1 while the node drains.");
  out << "wscluster_draining " << (draining ? 1 : 0) << '\n';
  family(out, "wscluster_state_store_up", "gauge",
         "1 while the state store is reachable.");
  out << "wscluster_state_store_up " << (store_healthy ? 1 : 0) << '\n';
  family(out, "wscluster_handshakes_total", "counter",
         "WebSocket handshakes by outcome.");
  out << "wscluster_handshakes_total{result=\"accepted\"} "
      << handshakes_accepted << '\n'
      << "wscluster_handshakes_total{result=\"rejected\",status=\"400\"} "
      << rejected_400 << '\n'
      << "wscluster_handshakes_total{result=\"rejected\",status=\"401\"} "
      << rejected_401 << '\n'
      << "wscluster_handshakes_total{result=\"rejected\",status=\"403\"} "
      << rejected_403 << '\n'
      << "wscluster_handshakes_total{result=\"rejected\",status=\"503\"} "
      << rejected_503 << '\n';
}

void node_metrics::render_deliveries(std::ostringstream& out) const {
  family(out, "wscluster_frames_in_total", "counter", "Client frames read.");
  out << "wscluster_frames_in_total " << frames_in << '\n';
  family(out, "wscluster_frames_out_total", "counter", "Frames written.");
  out << "wscluster_frames_out_total " << frames_out << '\n';
  family(out, "wscluster_deliveries_local_total", "counter",
         "Frames delivered to connections of this node.");
  out << "wscluster_deliveries_local_total " << deliveries_local << '\n';
  family(out, "wscluster_frames_out_by_type_total", "counter",
         "Delivered frames written to local connections, by frame type.");
  static constexpr const char* kinds[] = {"message", "broadcast", "group"};
  for (size_t i = 0; i < deliveries_by_kind.size(); ++i)
    out << "wscluster_frames_out_by_type_total{type=\"" << kinds[i] << "\"} "
        << deliveries_by_kind[i] << '\n';
  family(out, "wscluster_relayed_deliveries_total", "counter",
         "Deliveries carried through Redis pub/sub while the CAF connection "
         "to their node was down (dropped: Redis unreachable too).");
  out << "wscluster_relayed_deliveries_total{direction=\"out\"} " << relayed_out
      << '\n'
      << "wscluster_relayed_deliveries_total{direction=\"in\"} " << relayed_in
      << '\n'
      << "wscluster_relayed_deliveries_total{direction=\"dropped\"} "
      << relay_dropped << '\n';
  family(out, "wscluster_webhook_events_total", "counter",
         "Webhook events: POSTed, dropped, sent again after a failure, "
         "cancelled out by their opposite in a backlog.");
  out << "wscluster_webhook_events_total{result=\"sent\"} " << webhook_sent
      << '\n'
      << "wscluster_webhook_events_total{result=\"dropped\"} "
      << webhook_dropped << '\n'
      << "wscluster_webhook_events_total{result=\"retried\"} "
      << webhook_retried << '\n'
      << "wscluster_webhook_events_total{result=\"coalesced\"} "
      << webhook_coalesced << '\n';
}

void node_metrics::render_failures(std::ostringstream& out) const {
  family(out, "wscluster_relay_rejected_total", "counter",
         "Relayed messages refused (unauthenticated, misaddressed, stale, "
         "replayed or invalid).");
  out << "wscluster_relay_rejected_total " << relay_rejected << '\n';
  family(out, "wscluster_relay_rejected_by_reason_total", "counter",
         "Relayed messages refused, by reason.");
  for (size_t i = 0; i < relay_rejected_by_reason.size(); ++i)
    out << "wscluster_relay_rejected_by_reason_total{reason=\""
        << relay_rejection_reasons[i] << "\"} " << relay_rejected_by_reason[i]
        << '\n';
  family(out, "wscluster_queue_overflows_total", "counter",
         "Connections closed because their send queue overflowed.");
  out << "wscluster_queue_overflows_total " << queue_overflows << '\n';
  family(out, "wscluster_undeliverable_total", "counter",
         "Deliveries for other nodes dropped: the node's queue was full or it "
         "had no link and there is no relay (durable ones stay in inboxes).");
  out << "wscluster_undeliverable_total " << undeliverable << '\n';
  family(out, "wscluster_rejected_deliveries_total", "counter",
         "Deliveries from peers or the relay dropped as malformed.");
  out << "wscluster_rejected_deliveries_total " << rejected_deliveries << '\n';
  family(out, "wscluster_internal_failures_total", "counter",
         "Exceptions caught in long-lived actors (the actor lives on).");
  out << "wscluster_internal_failures_total " << internal_failures << '\n';
  family(out, "wscluster_errors_total", "counter",
         "Error frames sent to clients, by code.");
  for (size_t i = 1; i < errors.size(); ++i)
    out << "wscluster_errors_total{code=\"" << to_string(static_cast<ec>(i))
        << "\"} " << errors[i] << '\n';
  family(out, "wscluster_frames_in_by_type_total", "counter",
         "Client frames read, by frame type.");
  for (size_t i = 0; i <= counted_types.size(); ++i)
    out << "wscluster_frames_in_by_type_total{type=\""
        << (i < counted_types.size() ? counted_types[i] : "other") << "\"} "
        << frames_in_by_type[i] << '\n';
}

void node_metrics::render_peers(std::ostringstream& out) const {
  std::lock_guard guard{peers_mtx_};
  family(out, "wscluster_store_rtt_seconds", "histogram",
         "Round trips to the state store (heartbeats), in seconds.");
  for (size_t i = 0; i < rtt_buckets_ms.size(); ++i)
    out << "wscluster_store_rtt_seconds_bucket{le=\""
        << rtt_buckets_ms[i] / 1000.0 << "\"} " << rtt_counts_[i] << '\n';
  out << "wscluster_store_rtt_seconds_bucket{le=\"+Inf\"} " << rtt_count_
      << '\n'
      << "wscluster_store_rtt_seconds_sum " << rtt_sum_ms_ / 1000.0 << '\n'
      << "wscluster_store_rtt_seconds_count " << rtt_count_ << '\n';
  family(out, "wscluster_peer_heartbeat_age_seconds", "gauge",
         "Age of each peer's last heartbeat, as last seen in the store.");
  for (auto& [peer, age] : heartbeat_age_ms_)
    out << "wscluster_peer_heartbeat_age_seconds{peer=\"" << peer << "\"} "
        << static_cast<double>(age) / 1000.0 << '\n';
  family(out, "wscluster_remote_batches_total", "counter",
         "Delivery batches exchanged with peer nodes (one BASP message each).");
  for (auto& [peer, t] : peers_)
    out << "wscluster_remote_batches_total{peer=\"" << peer
        << "\",direction=\"out\"} " << t.batches_out << '\n'
        << "wscluster_remote_batches_total{peer=\"" << peer
        << "\",direction=\"in\"} " << t.batches_in << '\n';
  family(out, "wscluster_deliveries_remote_total", "counter",
         "Deliveries (one per message and target node) exchanged with peers.");
  for (auto& [peer, t] : peers_)
    out << "wscluster_deliveries_remote_total{peer=\"" << peer
        << "\",direction=\"out\"} " << t.items_out << '\n'
        << "wscluster_deliveries_remote_total{peer=\"" << peer
        << "\",direction=\"in\"} " << t.items_in << '\n';
}

} // namespace wsc
