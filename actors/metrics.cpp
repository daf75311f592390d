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

void node_metrics::count_remote(const std::string& peer) {
  ++batches_remote;
  std::lock_guard guard{peers_mtx_};
  ++remote_by_peer_[peer];
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
  family(out, "wscluster_remote_batches_total", "counter",
         "Delivery batches sent to peer nodes.");
  std::lock_guard guard{peers_mtx_};
  out << "wscluster_remote_batches_total{peer=\"all\"} " << batches_remote
      << '\n';
  for (auto& [peer, n] : remote_by_peer_)
    out << "wscluster_remote_batches_total{peer=\"" << peer << "\"} " << n
        << '\n';
  return out.str();
}

} // namespace wsc
