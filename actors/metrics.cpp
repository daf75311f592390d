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

void node_metrics::count_remote(const std::string& peer, size_t items) {
  std::lock_guard guard{peers_mtx_};
  auto& t = peers_[peer];
  ++t.batches_out;
  t.items_out += items;
}

void node_metrics::count_remote_in(const std::string& peer, size_t items) {
  std::lock_guard guard{peers_mtx_};
  auto& t = peers_[peer];
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
  family(out, "wscluster_frames_in_total", "counter", "Client frames read.");
  out << "wscluster_frames_in_total " << frames_in << '\n';
  family(out, "wscluster_frames_out_total", "counter", "Frames written.");
  out << "wscluster_frames_out_total " << frames_out << '\n';
  family(out, "wscluster_deliveries_local_total", "counter",
         "Frames delivered to connections of this node.");
  out << "wscluster_deliveries_local_total " << deliveries_local << '\n';
  family(out, "wscluster_queue_overflows_total", "counter",
         "Connections closed because their send queue overflowed.");
  out << "wscluster_queue_overflows_total " << queue_overflows << '\n';
  family(out, "wscluster_errors_total", "counter",
         "Error frames sent to clients, by code.");
  for (size_t i = 1; i < errors.size(); ++i)
    out << "wscluster_errors_total{code=\"" << to_string(static_cast<ec>(i))
        << "\"} " << errors[i] << '\n';
  std::lock_guard guard{peers_mtx_};
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
  return out.str();
}

} // namespace wsc
