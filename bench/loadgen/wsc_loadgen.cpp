// wsc-loadgen: a C++ load generator for wscluster, speaking the public protocol
// of CONTRACT.md section 2 (JSON text frames over WebSocket at /ws?uid=...).
//
// Scenarios (the same as ../shared/bench-peers, see bench/README.md):
//   s1      N idle connections alternating node 1 / node 2; server RSS per connection
//   s2      M senders on node 1 push to K receivers on node 2, open loop at R msg/s for D s
//   s3      C clients over both nodes, one broadcasts B times (next after all arrived + gap)
//   s4      G groups of K members alternating nodes, member 0 of a group publishes, R msg/s
//   search  the highest s2 rate with 0 lost, 0 duplicated and p99 <= --p99-ms (bounded steps)
//   fanout  C clients on ONE node, S of them broadcast closed loop (W in flight each): the
//           deliveries per second the node reaches when saturated (issue 14: io-threads 1 vs 2)
//
// Process model: the parent process only coordinates and measures (/proc); it forks
// --procs worker processes (default: as many as the 20000-fd limit needs), each with
// --threads threads, one io_context per thread, many connections per thread. Parent and
// workers talk over a socketpair in text lines. Latency is measured from a
// CLOCK_MONOTONIC timestamp (ns) in the payload, valid because every process is on the
// same machine. Every phase has a deadline and the whole run is bounded by --max-seconds.
//
// Output: one JSON line on stdout (and appended to --out), a short table on stderr.
// With --check the exit status is 1 unless everything was delivered exactly once.

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

// -- small utilities -----------------------------------------------------------------

uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull
         + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_ms(double ms) {
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
}

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "wsc-loadgen: " << msg << std::endl;
  std::exit(2);
}

/// Thrown when a phase or the whole run exceeds its time bound.
struct timeout_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::stringstream in{s};
  while (std::getline(in, item, sep))
    if (!item.empty())
      out.push_back(item);
  return out;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p != s.data();
}

/// Finds `key` (e.g. `"i":`) in `s` and parses the unsigned integer after it.
bool num_after(std::string_view s, std::string_view key, uint64_t& out) {
  auto p = s.find(key);
  if (p == std::string_view::npos)
    return false;
  return parse_u64(s.substr(p + key.size()), out);
}

double round_to(double v, int digits) {
  double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

// -- latency histogram: 1 us resolution below 2 ms, then ~0.1 % relative -------------

struct histogram {
  static constexpr size_t linear = 2048;
  static constexpr size_t sub = 1024;
  std::vector<uint64_t> buckets = std::vector<uint64_t>(linear + 40 * sub, 0);
  uint64_t count = 0;
  uint64_t max_ns = 0;

  static size_t index(uint64_t us) {
    if (us < linear)
      return us;
    int e = 63 - __builtin_clzll(us); // >= 11
    size_t idx = linear + static_cast<size_t>(e - 11) * sub
                 + ((us >> (e - 10)) & (sub - 1));
    return std::min(idx, linear + 40 * sub - 1);
  }
  static double value_us(size_t idx) {
    if (idx < linear)
      return static_cast<double>(idx);
    size_t e = (idx - linear) / sub + 11;
    size_t m = (idx - linear) % sub;
    // lower edge of the bucket + half its width
    double base = std::ldexp(1.0, static_cast<int>(e));
    double width = std::ldexp(1.0, static_cast<int>(e) - 10);
    return base + static_cast<double>(m) * width + width / 2;
  }
  void add(uint64_t ns) {
    ++buckets[index(ns / 1000)];
    ++count;
    max_ns = std::max(max_ns, ns);
  }
  void merge(const histogram& o) {
    for (size_t i = 0; i < buckets.size(); ++i)
      buckets[i] += o.buckets[i];
    count += o.count;
    max_ns = std::max(max_ns, o.max_ns);
  }
  /// Nearest-rank percentile (as the Node harness computes it), in ms.
  double percentile_ms(double p) const {
    if (count == 0)
      return 0;
    auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count)));
    rank = std::max<uint64_t>(rank, 1);
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      seen += buckets[i];
      if (seen >= rank)
        return std::min(value_us(i), static_cast<double>(max_ns) / 1000) / 1000;
    }
    return static_cast<double>(max_ns) / 1e6;
  }
  json sparse() const {
    json a = json::array();
    for (size_t i = 0; i < buckets.size(); ++i)
      if (buckets[i])
        a.push_back({i, buckets[i]});
    return a;
  }
  void add_sparse(const json& a) {
    for (auto& x : a) {
      auto i = x[0].get<size_t>();
      auto n = x[1].get<uint64_t>();
      if (i < buckets.size())
        buckets[i] += n;
      count += n;
    }
  }
  json summary() const {
    if (count == 0)
      return {{"n", 0}, {"p50", nullptr}, {"p90", nullptr}, {"p99", nullptr}, {"max", nullptr}};
    return {{"n", count},
            {"p50", round_to(percentile_ms(50), 3)},
            {"p90", round_to(percentile_ms(90), 3)},
            {"p99", round_to(percentile_ms(99), 3)},
            {"p999", round_to(percentile_ms(99.9), 3)},
            {"max", round_to(static_cast<double>(max_ns) / 1e6, 3)}};
  }
};

// -- options ------------------------------------------------------------------------

struct options {
  std::string scenario = "s1";
  std::string host = "127.0.0.1";
  std::vector<uint16_t> ports;
  std::vector<int> server_pids;
  int redis_pid = 0;
  int procs = 0; // 0: as many as the fd limit needs
  int threads = 1;
  // s1
  uint64_t n = 2000;
  double settle_s = 3;
  // s2 / s4 / search
  double rate = 2000;
  double duration = 10;
  uint64_t senders = 100;
  uint64_t receivers = 1000;
  // s3
  uint64_t clients = 5000;
  uint64_t broadcasts = 20;
  double gap_ms = 200;
  // s4
  uint64_t groups = 100;
  uint64_t group_size = 20;
  // fanout (also --clients, --senders, --duration)
  uint64_t window = 4;             // broadcasts in flight per sender
  double warmup_s = 1;             // closed loop running before the measured window
  uint64_t max_broadcasts = 0;     // bound of the run (0: 32 MiB of per-connection bitsets)
  uint64_t node_io_threads = 0;    // the node's --io-threads, recorded (0: not given)
  // search
  double search_from = 5000;
  double search_max = 400000;
  int search_steps = 10;
  double p99_ms = 10;
  // common
  size_t payload_bytes = 64;
  std::string label;
  std::string out;
  std::string uid_prefix;
  uint64_t connect_concurrency = 256;
  double connect_timeout_s = 15;
  double max_seconds = 240;
  double drain_idle_s = 2;
  double drain_max_s = 15;
  int source_ips = 1;
  double tick_us = 100;
  bool check = false;
  bool group_self = true; // s4: the publisher's own connection gets its group messages
  std::string system = "wscluster";
};

const char* usage_text =
  R"(wsc-loadgen --scenario s1|s2|s3|s4|search|fanout --ports P1[,P2] [options]

  --server-pids PID1,PID2  node processes (CPU from /proc/PID/stat, RSS from /proc/PID/status)
  --redis-pid PID          Redis process (CPU per message)
  --procs N                worker processes (default: enough for the fd limit, at least 1)
  --threads N              threads (io_contexts) per worker process (default 1)
  s1: --n 2000 --settle 3
  s2: --rate 2000 --duration 10 --senders 100 --receivers 1000
  s3: --clients 5000 --broadcasts 20 --gap-ms 200
  s4: --groups 100 --group-size 20 --rate 250 --duration 10
  fanout: --clients 1000 --senders 4 --window 4 --warmup 1 --duration 10
          --max-broadcasts 2^28/clients --node-io-threads N (recorded only); one port, one
          --server-pids: every client on that node, the first S broadcast, each keeping
          W broadcasts in flight (the next when its own copy came back); deliveries/s
          counted over --duration after --warmup
  search: s2 options (duration per step, default 5) plus --search-from 5000
          --search-max 400000 --search-steps 10 --p99-ms 10
  --payload-bytes 64 --label TEXT --out FILE --uid-prefix P --connect-concurrency 256
  --connect-timeout 15 --max-seconds 240 --drain-idle 2 --drain-max 15
  --source-ips N (spread connections over 127.0.0.1..N) --tick-us 100
  --check (exit 1 unless all delivered once, none failed) --system NAME --host 127.0.0.1
  --group-self 1|0 (s4: whether the publishing connection itself must get each group
                    message; CONTRACT: "every connection of every member", default 1)
)";

options parse_args(int argc, char** argv) {
  options o;
  std::map<std::string, std::string> kv;
  bool duration_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage_text;
      std::exit(0);
    }
    if (a.rfind("--", 0) != 0)
      die("unexpected argument '" + a + "'\n" + usage_text);
    a = a.substr(2);
    if (auto eq = a.find('='); eq != std::string::npos) {
      kv[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (a == "check") {
      kv[a] = "true";
    } else {
      if (i + 1 >= argc)
        die("option --" + a + " needs a value");
      kv[a] = argv[++i];
    }
  }
  auto num = [&](const std::string& k, double& v) {
    try {
      size_t pos = 0;
      v = std::stod(kv[k], &pos);
      if (pos != kv[k].size())
        throw std::invalid_argument(k);
    } catch (...) {
      die("option --" + k + ": not a number: '" + kv[k] + "'");
    }
  };
  for (auto& [k, v] : kv) {
    double d = 0;
    auto u64 = [&](uint64_t& x) {
      num(k, d);
      if (d < 0)
        die("option --" + k + " must be >= 0");
      x = static_cast<uint64_t>(d);
    };
    if (k == "scenario")
      o.scenario = v;
    else if (k == "host")
      o.host = v;
    else if (k == "ports") {
      for (auto& p : split(v, ','))
        o.ports.push_back(static_cast<uint16_t>(std::stoi(p)));
    } else if (k == "server-pids") {
      for (auto& p : split(v, ','))
        o.server_pids.push_back(std::stoi(p));
    } else if (k == "redis-pid")
      o.redis_pid = std::stoi(v);
    else if (k == "procs") { uint64_t x; u64(x); o.procs = static_cast<int>(x); }
    else if (k == "threads") { uint64_t x; u64(x); o.threads = std::max<int>(1, static_cast<int>(x)); }
    else if (k == "n") u64(o.n);
    else if (k == "settle") num(k, o.settle_s);
    else if (k == "rate") num(k, o.rate);
    else if (k == "duration") { num(k, o.duration); duration_given = true; }
    else if (k == "senders") u64(o.senders);
    else if (k == "receivers") u64(o.receivers);
    else if (k == "clients") u64(o.clients);
    else if (k == "broadcasts") u64(o.broadcasts);
    else if (k == "gap-ms") num(k, o.gap_ms);
    else if (k == "groups") u64(o.groups);
    else if (k == "group-size") u64(o.group_size);
    else if (k == "window") u64(o.window);
    else if (k == "warmup") num(k, o.warmup_s);
    else if (k == "max-broadcasts") u64(o.max_broadcasts);
    else if (k == "node-io-threads") u64(o.node_io_threads);
    else if (k == "search-from") num(k, o.search_from);
    else if (k == "search-max") num(k, o.search_max);
    else if (k == "search-steps") { uint64_t x; u64(x); o.search_steps = static_cast<int>(x); }
    else if (k == "p99-ms") num(k, o.p99_ms);
    else if (k == "payload-bytes") { uint64_t x; u64(x); o.payload_bytes = x; }
    else if (k == "label") o.label = v;
    else if (k == "out") o.out = v;
    else if (k == "uid-prefix") o.uid_prefix = v;
    else if (k == "connect-concurrency") u64(o.connect_concurrency);
    else if (k == "connect-timeout") num(k, o.connect_timeout_s);
    else if (k == "max-seconds") num(k, o.max_seconds);
    else if (k == "drain-idle") num(k, o.drain_idle_s);
    else if (k == "drain-max") num(k, o.drain_max_s);
    else if (k == "source-ips") { uint64_t x; u64(x); o.source_ips = std::max<int>(1, static_cast<int>(x)); }
    else if (k == "tick-us") num(k, o.tick_us);
    else if (k == "check") o.check = (v != "false" && v != "0");
    else if (k == "system") o.system = v;
    else if (k == "group-self") o.group_self = (v != "false" && v != "0");
    else die("unknown option --" + k + "\n" + usage_text);
  }
  static const std::vector<std::string> scenarios{"s1", "s2", "s3", "s4", "search", "fanout"};
  if (std::find(scenarios.begin(), scenarios.end(), o.scenario) == scenarios.end())
    die("unknown scenario '" + o.scenario + "'");
  if (o.ports.empty() || o.ports.size() > 2)
    die("--ports P1[,P2] required");
  if (o.ports.size() == 1)
    o.ports.push_back(o.ports[0]);
  if (o.scenario == "s4" && !kv.count("rate"))
    o.rate = 250;
  if (o.scenario == "search" && !duration_given)
    o.duration = 5;
  if (o.scenario == "fanout") {
    if (!kv.count("clients"))
      o.clients = 1000;
    if (!kv.count("senders"))
      o.senders = 4;
    if (o.max_broadcasts == 0) // every connection keeps one bit per broadcast
      o.max_broadcasts = (uint64_t{1} << 28) / std::max<uint64_t>(o.clients, 1);
    if (o.senders == 0 || o.senders > o.clients || o.window == 0)
      die("fanout needs 0 < --senders <= --clients and --window > 0");
    if (o.max_broadcasts < o.senders * o.window)
      die("fanout: --max-broadcasts must be >= senders x window");
  }
  if ((o.scenario == "s2" || o.scenario == "search") && (o.senders == 0 || o.receivers == 0))
    die("s2 needs --senders and --receivers > 0");
  if (o.scenario == "s4" && (o.groups == 0 || o.group_size == 0))
    die("s4 needs --groups and --group-size > 0");
  if (o.rate <= 0 || o.duration <= 0)
    die("--rate and --duration must be > 0");
  if (o.source_ips > 254)
    die("--source-ips at most 254");
  return o;
}

// -- the connections a run opens -----------------------------------------------------

enum class role : uint8_t { idle, sender, receiver, member, client };

struct spec {
  std::string uid;
  uint8_t port;  // index into options::ports
  role r;
  uint32_t a;    // receiver index (s2), group (s4), client index (s3)
  uint32_t b;    // member index in its group (s4)
};

std::vector<spec> build_specs(const options& o) {
  std::vector<spec> out;
  const auto& p = o.uid_prefix;
  if (o.scenario == "s1") {
    for (uint64_t i = 0; i < o.n; ++i)
      out.push_back({p + "u" + std::to_string(i), static_cast<uint8_t>(i % 2), role::idle,
                     static_cast<uint32_t>(i), 0});
  } else if (o.scenario == "s2" || o.scenario == "search") {
    for (uint64_t i = 0; i < o.receivers; ++i)
      out.push_back({p + "r" + std::to_string(i), 1, role::receiver, static_cast<uint32_t>(i), 0});
    for (uint64_t i = 0; i < o.senders; ++i)
      out.push_back({p + "s" + std::to_string(i), 0, role::sender, static_cast<uint32_t>(i), 0});
  } else if (o.scenario == "s3") {
    for (uint64_t i = 0; i < o.clients; ++i)
      out.push_back({p + "b" + std::to_string(i), static_cast<uint8_t>(i % 2), role::client,
                     static_cast<uint32_t>(i), 0});
  } else if (o.scenario == "fanout") {
    // one node (port 0); client i < senders is sender i
    for (uint64_t i = 0; i < o.clients; ++i)
      out.push_back({p + "f" + std::to_string(i), 0, i < o.senders ? role::sender : role::client,
                     static_cast<uint32_t>(i), 0});
  } else if (o.scenario == "s4") {
    for (uint64_t g = 0; g < o.groups; ++g)
      for (uint64_t k = 0; k < o.group_size; ++k)
        out.push_back({p + "g" + std::to_string(g) + "m" + std::to_string(k),
                       static_cast<uint8_t>((g + k) % 2), role::member,
                       static_cast<uint32_t>(g), static_cast<uint32_t>(k)});
  }
  return out;
}

// ======================================================================================
// Worker process: connections, sending schedule, receive accounting
// ======================================================================================

enum class scen : uint8_t { none, s2, s3, s4, fanout };

/// The scenario of a worker's `run` command (the names push_step and fanout() send).
scen scen_named(const std::string& name) {
  if (name == "s2")
    return scen::s2;
  if (name == "s3")
    return scen::s3;
  if (name == "s4")
    return scen::s4;
  if (name == "fanout")
    return scen::fanout;
  return scen::none;
}

struct run_params {
  scen kind = scen::none;
  uint64_t epoch = 0;
  double rate = 0;
  uint64_t total = 0;  // messages (s2, s4) or broadcasts (s3; fanout: at most)
  uint64_t t0 = 0;     // ns, CLOCK_MONOTONIC
};

struct tctx;

struct conn {
  tctx* t;
  uint32_t gidx; // index into the spec list
  const spec* sp;
  websocket::stream<tcp::socket> ws;
  beast::flat_buffer buf;
  std::deque<std::string> q;
  asio::steady_timer timer;
  std::vector<uint64_t> seen;
  bool writing = false;
  bool open = false;
  bool connect_done = false;
  bool timed_out = false;
  bool join_pending = false;
  uint64_t sent_seq = 0; // fanout: broadcasts this sender sent in this run

  conn(tctx* tc, uint32_t idx, const spec* s, asio::io_context& ioc)
    : t(tc), gidx(idx), sp(s), ws(ioc), timer(ioc) {}
};

struct thread_stats {
  uint64_t dup = 0, stale = 0, misrouted = 0, corrupt = 0, unexpected = 0, self_echo = 0;
  uint64_t acks = 0, errors = 0, byes = 0, other = 0, closed_after_open = 0;
  uint64_t sent = 0, send_skipped = 0, max_lag_ns = 0, first_send = 0, last_send = 0;
  uint64_t max_queue = 0;
  uint64_t capped = 0; // fanout: sends refused by --max-broadcasts
  std::string first_error, first_close;
  histogram hist;
  std::vector<uint64_t> b_count, b_last; // s3: per broadcast
};

struct worker_shared {
  const options* o = nullptr;
  std::vector<spec> specs;
  std::vector<tcp::endpoint> endpoints;
  std::vector<std::string> host_hdr;
  std::string pad;
  run_params rp;
};

worker_shared W;

struct tctx {
  asio::io_context ioc{1};
  std::thread th;
  std::vector<conn*> conns;
  // connecting
  size_t next_connect = 0;
  uint64_t inflight = 0;
  uint64_t connect_limit = 64;
  std::atomic<uint64_t> connected{0}, connect_failed{0};
  std::atomic<uint64_t> connected_port[2] = {0, 0};
  std::string first_connect_error;
  // joining (s4)
  std::atomic<uint64_t> joined{0}, join_failed{0};
  // receiving
  std::atomic<uint64_t> delivered{0}, last_recv{0};
  thread_stats st;
  // sending (s2, s4)
  run_params rp;
  std::vector<conn*> owners; // by sender number (s2) or group (s4)
  uint64_t next_i = 0;
  std::atomic<bool> send_done{true}; // fanout: senders stop at the next echo
  asio::steady_timer send_timer{ioc};
};

std::vector<std::unique_ptr<tctx>> threads;

void start_next_connect(tctx* t);

void connect_finished(conn* c, bool ok, const std::string& err) {
  if (c->connect_done)
    return;
  c->connect_done = true;
  auto* t = c->t;
  --t->inflight;
  if (ok) {
    t->connected_port[c->sp->port].fetch_add(1, std::memory_order_relaxed);
    t->connected.fetch_add(1, std::memory_order_relaxed);
  } else {
    if (t->first_connect_error.empty())
      t->first_connect_error = c->sp->uid + ": " + err;
    t->connect_failed.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    c->ws.next_layer().close(ec);
  }
  start_next_connect(t);
}

void on_closed(conn* c, const beast::error_code& ec) {
  if (!c->connect_done) {
    connect_finished(c, false, c->timed_out ? "timeout" : ec.message());
    return;
  }
  if (c->open) {
    c->open = false;
    auto& st = c->t->st;
    ++st.closed_after_open;
    if (st.first_close.empty()) {
      auto r = c->ws.reason();
      st.first_close = c->sp->uid + ": " + ec.message() + " (close code "
                       + std::to_string(r.code) + " " + std::string(r.reason.c_str()) + ")";
    }
  }
}

void do_write(conn* c);

void send_frame(conn* c, std::string frame) {
  if (!c->open) {
    ++c->t->st.send_skipped;
    return;
  }
  c->q.push_back(std::move(frame));
  if (c->q.size() > c->t->st.max_queue)
    c->t->st.max_queue = c->q.size();
  if (!c->writing)
    do_write(c);
}

void do_write(conn* c) {
  c->writing = true;
  c->ws.async_write(asio::buffer(c->q.front()), [c](beast::error_code ec, size_t) {
    c->writing = false;
    c->q.pop_front();
    if (ec) {
      c->q.clear();
      return;
    }
    if (!c->q.empty() && c->open)
      do_write(c);
  });
}

void fanout_send(conn* c);

bool test_and_set(std::vector<uint64_t>& bits, uint64_t i) {
  auto& w = bits[i / 64];
  uint64_t m = 1ull << (i % 64);
  bool was = (w & m) != 0;
  w |= m;
  return was;
}

void on_delivery(conn* c, scen kind, std::string_view f) {
  auto now = mono_ns();
  auto* t = c->t;
  auto& st = t->st;
  auto p = f.find("\"data\":");
  if (p == std::string_view::npos) {
    ++st.corrupt;
    return;
  }
  auto d = f.substr(p + 7);
  uint64_t e = 0, i = 0, ts = 0;
  if (!num_after(d, "\"e\":", e) || !num_after(d, "\"i\":", i) || !num_after(d, "\"t\":", ts)) {
    ++st.corrupt;
    return;
  }
  const auto& rp = t->rp;
  if (e != rp.epoch) {
    ++st.stale;
    return;
  }
  if (kind != rp.kind) {
    ++st.unexpected;
    return;
  }
  const auto& o = *W.o;
  uint64_t idx = 0;
  switch (kind) {
    case scen::s2:
      if (c->sp->r != role::receiver || i % o.receivers != c->sp->a) {
        ++st.misrouted;
        return;
      }
      idx = i / o.receivers;
      break;
    case scen::s3:
    case scen::fanout:
      idx = i;
      break;
    case scen::s4:
      if (c->sp->r != role::member || i % o.groups != c->sp->a) {
        ++st.misrouted;
        return;
      }
      idx = i / o.groups;
      if (c->sp->b == 0) {
        ++st.self_echo; // the publisher's own connection
        if (!o.group_self)
          return;
      }
      break;
    case scen::none:
      ++st.unexpected;
      return;
  }
  if (idx >= c->seen.size() * 64 || i >= rp.total) {
    ++st.misrouted;
    return;
  }
  if (test_and_set(c->seen, idx)) {
    ++st.dup;
    return;
  }
  // the payload must arrive as sent: check the pad's length
  if (auto pp = d.find("\"pad\":\""); pp != std::string_view::npos) {
    auto rest = d.substr(pp + 7);
    auto q = rest.find('"');
    if (q != W.pad.size())
      ++st.corrupt;
  } else {
    ++st.corrupt;
  }
  st.hist.add(now > ts ? now - ts : 0);
  if (kind == scen::s3 && i < st.b_count.size()) {
    ++st.b_count[i];
    st.b_last[i] = std::max(st.b_last[i], now);
  }
  t->delivered.store(t->delivered.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  t->last_recv.store(now, std::memory_order_relaxed);
  // closed loop: a sender's own copy coming back frees a slot of its window
  if (kind == scen::fanout && c->sp->r == role::sender && i % o.senders == c->sp->a)
    fanout_send(c);
}

void on_frame(conn* c, std::string_view f) {
  std::string_view type;
  static constexpr std::string_view head = "{\"type\":\"";
  size_t p = 0;
  if (f.substr(0, head.size()) == head) {
    p = head.size();
  } else if (auto q = f.find("\"type\":\""); q != std::string_view::npos) {
    p = q + 8;
  } else {
    ++c->t->st.other;
    return;
  }
  auto e = f.find('"', p);
  type = f.substr(p, e == std::string_view::npos ? 0 : e - p);
  auto& st = c->t->st;
  if (type == "message")
    on_delivery(c, scen::s2, f);
  else if (type == "broadcast") // s3 and fanout both broadcast
    on_delivery(c, c->t->rp.kind == scen::fanout ? scen::fanout : scen::s3, f);
  else if (type == "group")
    on_delivery(c, scen::s4, f);
  else if (type == "ack") {
    uint64_t id = 0;
    if (c->join_pending && num_after(f, "\"id\":", id) && id == c->gidx + 1ull) {
      c->join_pending = false;
      c->t->joined.fetch_add(1, std::memory_order_relaxed);
    } else {
      ++st.acks;
    }
  } else if (type == "error") {
    ++st.errors;
    if (st.first_error.empty())
      st.first_error = c->sp->uid + ": " + std::string(f.substr(0, 300));
    uint64_t id = 0;
    if (c->join_pending && num_after(f, "\"id\":", id) && id == c->gidx + 1ull) {
      c->join_pending = false;
      c->t->join_failed.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (type == "welcome") {
    if (!c->open && !c->connect_done) {
      c->open = true;
      c->timer.cancel();
      connect_finished(c, true, {});
    }
  } else if (type == "bye") {
    ++st.byes;
  } else {
    ++st.other;
  }
}

void do_read(conn* c) {
  c->ws.async_read(c->buf, [c](beast::error_code ec, size_t) {
    if (ec) {
      on_closed(c, ec);
      return;
    }
    auto d = c->buf.cdata();
    on_frame(c, std::string_view(static_cast<const char*>(d.data()), d.size()));
    c->buf.consume(c->buf.size());
    do_read(c);
  });
}

void start_connect(conn* c) {
  const auto& o = *W.o;
  auto& sock = c->ws.next_layer();
  if (o.source_ips > 1) {
    beast::error_code ec;
    sock.open(tcp::v4(), ec);
    int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
    ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    (void)one;
    auto ip = asio::ip::address_v4(0x7f000001u + (c->gidx % static_cast<uint32_t>(o.source_ips)));
    if (!ec)
      sock.bind(tcp::endpoint(ip, 0), ec);
    if (ec) {
      connect_finished(c, false, "bind: " + ec.message());
      return;
    }
  }
  c->timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(o.connect_timeout_s * 1000)));
  c->timer.async_wait([c](beast::error_code ec) {
    if (!ec && !c->connect_done) {
      c->timed_out = true;
      beast::error_code e;
      c->ws.next_layer().close(e);
    }
  });
  sock.async_connect(W.endpoints[c->sp->port], [c](beast::error_code ec) {
    if (ec) {
      on_closed(c, ec);
      return;
    }
    beast::error_code ignore;
    c->ws.next_layer().set_option(tcp::no_delay(true), ignore);
    websocket::stream_base::timeout to{};
    to.handshake_timeout = std::chrono::seconds(10);
    to.idle_timeout = websocket::stream_base::none();
    to.keep_alive_pings = false;
    c->ws.set_option(to);
    c->ws.auto_fragment(false);
    c->ws.secure_prng(false);
    c->ws.read_message_max(1 << 20);
    c->ws.text(true);
    std::string target = "/ws?uid=" + c->sp->uid;
    c->ws.async_handshake(W.host_hdr[c->sp->port], target, [c](beast::error_code ec) {
      if (ec) {
        on_closed(c, ec);
        return;
      }
      do_read(c); // the first frame must be the welcome
    });
  });
}

void start_next_connect(tctx* t) {
  while (t->inflight < t->connect_limit && t->next_connect < t->conns.size()) {
    auto* c = t->conns[t->next_connect++];
    ++t->inflight;
    start_connect(c);
  }
}

// -- sending schedule ---------------------------------------------------------------

std::string payload(uint64_t epoch, uint64_t i, uint64_t ts) {
  std::string s;
  s.reserve(64 + W.pad.size());
  s += "{\"e\":";
  s += std::to_string(epoch);
  s += ",\"i\":";
  s += std::to_string(i);
  s += ",\"t\":";
  s += std::to_string(ts);
  s += ",\"pad\":\"";
  s += W.pad;
  s += "\"}";
  return s;
}

std::string broadcast_frame(uint64_t epoch, uint64_t i, uint64_t ts) {
  return "{\"type\":\"broadcast\",\"data\":" + payload(epoch, i, ts) + "}";
}

/// Counts a frame one of our senders queues (achieved rate, schedule span).
void count_sent(thread_stats& st, uint64_t ts) {
  if (!st.first_send)
    st.first_send = ts;
  st.last_send = ts;
  ++st.sent;
}

/// fanout: sender c's next broadcast, number i = k * senders + sender for its k-th,
/// unless the run was stopped or reached --max-broadcasts.
void fanout_send(conn* c) {
  auto* t = c->t;
  const auto& o = *W.o;
  if (t->send_done.load(std::memory_order_relaxed))
    return;
  auto i = c->sent_seq * o.senders + c->sp->a;
  if (i >= t->rp.total) {
    ++t->st.capped;
    return;
  }
  ++c->sent_seq;
  auto ts = mono_ns();
  count_sent(t->st, ts);
  send_frame(c, broadcast_frame(t->rp.epoch, i, ts));
}

void tick(tctx* t);

uint64_t due_time(const tctx* t, uint64_t i) {
  return t->rp.t0 + static_cast<uint64_t>(static_cast<double>(i) * 1e9 / t->rp.rate);
}

void arm(tctx* t, uint64_t at_ns) {
  auto now = mono_ns();
  auto wait = at_ns > now ? at_ns - now : 0;
  t->send_timer.expires_after(std::chrono::nanoseconds(wait));
  t->send_timer.async_wait([t](beast::error_code ec) {
    if (!ec)
      tick(t);
  });
}

void tick(tctx* t) {
  const auto& o = *W.o;
  auto& rp = t->rp;
  auto now = mono_ns();
  uint64_t due = 0;
  if (now >= rp.t0)
    due = std::min<uint64_t>(rp.total, static_cast<uint64_t>(static_cast<double>(now - rp.t0) * rp.rate / 1e9) + 1);
  auto& st = t->st;
  for (; t->next_i < due; ++t->next_i) {
    auto i = t->next_i;
    uint64_t slot = rp.kind == scen::s2 ? i % o.senders : i % o.groups;
    conn* c = t->owners[slot];
    if (!c)
      continue;
    auto ts = mono_ns();
    auto lag = ts > due_time(t, i) ? ts - due_time(t, i) : 0;
    st.max_lag_ns = std::max(st.max_lag_ns, lag);
    std::string f;
    f.reserve(96 + W.pad.size());
    if (rp.kind == scen::s2) {
      f += "{\"type\":\"send\",\"to\":\"";
      f += W.specs[i % o.receivers].uid; // receivers come first in the spec list
      f += "\",\"data\":";
    } else {
      f += "{\"type\":\"publish\",\"group\":\"";
      f += o.uid_prefix + "grp" + std::to_string(i % o.groups);
      f += "\",\"data\":";
    }
    f += payload(rp.epoch, i, ts);
    f += '}';
    count_sent(st, ts);
    send_frame(c, std::move(f));
  }
  // skip messages another thread or process sends
  while (t->next_i < rp.total) {
    uint64_t slot = rp.kind == scen::s2 ? t->next_i % o.senders : t->next_i % o.groups;
    if (t->owners[slot])
      break;
    ++t->next_i;
  }
  if (t->next_i >= rp.total) {
    t->send_done.store(true);
    return;
  }
  auto next = std::max(now + static_cast<uint64_t>(o.tick_us * 1000), due_time(t, t->next_i));
  arm(t, next);
}

// -- worker control: runs on the worker's main thread ---------------------------------

template <class F>
void on_all_threads(F f) {
  std::vector<std::future<void>> done;
  for (auto& t : threads) {
    auto pr = std::make_shared<std::promise<void>>();
    done.push_back(pr->get_future());
    asio::post(t->ioc, [pr, f, tp = t.get()] {
      f(tp);
      pr->set_value();
    });
  }
  for (auto& d : done)
    d.wait();
}

void reset_run(tctx* t, const run_params& rp) {
  const auto& o = *W.o;
  t->rp = rp;
  t->st = thread_stats{};
  t->delivered.store(0);
  t->last_recv.store(0);
  t->next_i = 0;
  uint64_t bits = 0;
  if (rp.kind == scen::s2)
    bits = rp.total / o.receivers + 1;
  else if (rp.kind == scen::s3 || rp.kind == scen::fanout)
    bits = rp.total;
  else if (rp.kind == scen::s4)
    bits = rp.total / o.groups + 1;
  for (auto* c : t->conns)
    c->seen.assign((bits + 63) / 64, 0);
  if (rp.kind == scen::s3) {
    t->st.b_count.assign(rp.total, 0);
    t->st.b_last.assign(rp.total, 0);
  }
  t->owners.clear();
  if (rp.kind == scen::s2 || rp.kind == scen::s4) {
    t->owners.assign(rp.kind == scen::s2 ? o.senders : o.groups, nullptr);
    for (auto* c : t->conns) {
      if (rp.kind == scen::s2 && c->sp->r == role::sender)
        t->owners[c->sp->a] = c;
      if (rp.kind == scen::s4 && c->sp->r == role::member && c->sp->b == 0)
        t->owners[c->sp->a] = c;
    }
    bool any = std::any_of(t->owners.begin(), t->owners.end(), [](conn* c) { return c; });
    t->send_done.store(!any);
    if (any)
      arm(t, rp.t0);
  } else if (rp.kind == scen::fanout) {
    // closed loop: every sender fills its window now, then one per echo until stopped
    t->send_done.store(false);
    for (auto* c : t->conns) {
      c->sent_seq = 0;
      if (c->sp->r == role::sender && c->open)
        for (uint64_t w = 0; w < o.window; ++w)
          fanout_send(c);
    }
  } else {
    t->send_done.store(true);
  }
}

/// Ends the thread's sending (the open-loop schedule, or fanout's closed loop).
void stop_sending(tctx* t) {
  t->send_timer.cancel();
  t->send_done.store(true);
}

json thread_report(tctx* t) {
  auto& st = t->st;
  return {{"delivered", t->delivered.load()}, {"dup", st.dup}, {"stale", st.stale},
          {"misrouted", st.misrouted}, {"corrupt", st.corrupt}, {"unexpected", st.unexpected},
          {"acks", st.acks}, {"errors", st.errors}, {"self_echo", st.self_echo}, {"byes", st.byes}, {"other", st.other},
          {"closed_after_open", st.closed_after_open}, {"sent", st.sent},
          {"send_skipped", st.send_skipped}, {"max_lag_ns", st.max_lag_ns},
          {"first_send", st.first_send}, {"last_send", st.last_send},
          {"last_recv", t->last_recv.load()}, {"max_queue", st.max_queue},
          {"capped", st.capped}, {"first_error", st.first_error}, {"first_close", st.first_close}};
}

class line_io {
public:
  line_io(int in, int out) : in_(in), out_(out) {}
  int fd() const { return in_; }
  void write(const std::string& line) {
    std::string s = line + "\n";
    size_t off = 0;
    while (off < s.size()) {
      auto n = ::write(out_, s.data() + off, s.size() - off);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        throw std::runtime_error("pipe write failed");
      }
      off += static_cast<size_t>(n);
    }
  }
  /// Reads one line; deadline_ns 0 waits forever. Throws on EOF or timeout.
  std::string read(uint64_t deadline_ns = 0) {
    for (;;) {
      if (auto p = buf_.find('\n'); p != std::string::npos) {
        auto line = buf_.substr(0, p);
        buf_.erase(0, p + 1);
        return line;
      }
      int wait_ms = -1;
      if (deadline_ns) {
        auto now = mono_ns();
        if (now >= deadline_ns)
          throw timeout_error("timeout waiting for a worker");
        wait_ms = static_cast<int>((deadline_ns - now) / 1000000 + 1);
      }
      pollfd pfd{in_, POLLIN, 0};
      int r = ::poll(&pfd, 1, wait_ms);
      if (r < 0 && errno == EINTR)
        continue;
      if (r == 0)
        continue;
      char tmp[65536];
      auto n = ::read(in_, tmp, sizeof tmp);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        throw std::runtime_error("worker pipe closed");
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

private:
  int in_, out_;
  std::string buf_;
};

[[noreturn]] void worker_main(const options& o, std::vector<spec> all, int w, int nprocs,
                              int fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1)
    _exit(1);
  W.o = &o;
  W.specs = std::move(all);
  W.pad.assign(o.payload_bytes, 'x');
  for (auto port : o.ports) {
    W.endpoints.emplace_back(asio::ip::make_address(o.host), port);
    W.host_hdr.push_back(o.host + ":" + std::to_string(port));
  }
  for (int i = 0; i < o.threads; ++i)
    threads.push_back(std::make_unique<tctx>());
  auto per_thread = std::max<uint64_t>(
    1, o.connect_concurrency / static_cast<uint64_t>(nprocs * o.threads));
  size_t local = 0;
  for (size_t j = static_cast<size_t>(w); j < W.specs.size(); j += static_cast<size_t>(nprocs)) {
    auto* t = threads[local % threads.size()].get();
    t->conns.push_back(new conn(t, static_cast<uint32_t>(j), &W.specs[j], t->ioc));
    ++local;
  }
  for (auto& t : threads) {
    t->connect_limit = per_thread;
    auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
      t->ioc.get_executor());
    t->th = std::thread([tp = t.get(), guard] { tp->ioc.run(); });
  }
  line_io io(fd, fd);
  auto sum = [](auto get) {
    uint64_t s = 0;
    for (auto& t : threads)
      s += get(*t);
    return s;
  };
  for (;;) {
    std::string line;
    try {
      line = io.read();
    } catch (...) {
      _exit(0);
    }
    std::istringstream in{line};
    std::string cmd;
    in >> cmd;
    if (cmd == "connect") {
      on_all_threads([](tctx* t) { start_next_connect(t); });
      auto deadline = mono_ns() + static_cast<uint64_t>((o.connect_timeout_s + 60) * 1e9);
      while (sum([](tctx& t) { return t.connected.load() + t.connect_failed.load(); }) < local
             && mono_ns() < deadline)
        sleep_ms(5);
      json r{{"ok", sum([](tctx& t) { return t.connected.load(); })},
             {"failed", sum([](tctx& t) { return t.connect_failed.load(); })},
             {"port0", sum([](tctx& t) { return t.connected_port[0].load(); })},
             {"port1", sum([](tctx& t) { return t.connected_port[1].load(); })},
             {"local", local}};
      std::string err;
      on_all_threads([&err](tctx* t) {
        if (err.empty())
          err = t->first_connect_error;
      });
      r["first_error"] = err;
      io.write(r.dump());
    } else if (cmd == "join") {
      std::atomic<uint64_t> expected{0};
      on_all_threads([&o, &expected](tctx* t) {
        for (auto* c : t->conns) {
          if (!c->open || c->sp->r != role::member)
            continue;
          c->join_pending = true;
          ++expected;
          send_frame(c, "{\"type\":\"join\",\"group\":\"" + o.uid_prefix + "grp"
                          + std::to_string(c->sp->a) + "\",\"id\":" + std::to_string(c->gidx + 1ull)
                          + "}");
        }
      });
      auto deadline = mono_ns() + 60'000'000'000ull;
      while (sum([](tctx& t) { return t.joined.load() + t.join_failed.load(); }) < expected
             && mono_ns() < deadline)
        sleep_ms(5);
      json r{{"joined", sum([](tctx& t) { return t.joined.load(); })},
             {"failed", sum([](tctx& t) { return t.join_failed.load(); })},
             {"expected", expected.load()}};
      io.write(r.dump());
    } else if (cmd == "run") {
      // run KIND EPOCH RATE TOTAL T0
      std::string kind;
      run_params rp;
      in >> kind >> rp.epoch >> rp.rate >> rp.total >> rp.t0;
      rp.kind = scen_named(kind);
      on_all_threads([rp](tctx* t) { reset_run(t, rp); });
      io.write("ok");
    } else if (cmd == "wait_sent") {
      uint64_t deadline = 0;
      in >> deadline;
      while (sum([](tctx& t) { return t.send_done.load() ? 0ull : 1ull; }) > 0
             && mono_ns() < deadline)
        sleep_ms(1);
      bool done = sum([](tctx& t) { return t.send_done.load() ? 0ull : 1ull; }) == 0;
      if (!done)
        on_all_threads(stop_sending);
      io.write(done ? "done" : "cut");
    } else if (cmd == "stop") {
      // stop: ends sending at once, answers how many frames this run sent
      std::atomic<uint64_t> sent{0};
      on_all_threads([&sent](tctx* t) {
        stop_sending(t);
        sent += t->st.sent;
      });
      io.write(std::to_string(sent.load()));
    } else if (cmd == "stat") {
      uint64_t last = 0;
      for (auto& t : threads)
        last = std::max(last, t->last_recv.load());
      io.write(std::to_string(sum([](tctx& t) { return t.delivered.load(); })) + " "
               + std::to_string(last));
    } else if (cmd == "bcast") {
      // bcast EPOCH B: the worker owning the publisher (spec 0) sends broadcast B
      uint64_t epoch = 0, b = 0;
      in >> epoch >> b;
      std::atomic<uint64_t> ts{0};
      on_all_threads([&ts, epoch, b](tctx* t) {
        for (auto* c : t->conns) {
          if (c->gidx != 0)
            continue;
          auto now = mono_ns();
          ts = now;
          ++t->st.sent;
          send_frame(c, broadcast_frame(epoch, b, now));
        }
      });
      io.write(std::to_string(ts.load()));
    } else if (cmd == "report") {
      json r = json::object();
      histogram h;
      json per = json::array();
      std::vector<uint64_t> bc, bl;
      for (auto& t : threads) {
        std::promise<void> pr;
        asio::post(t->ioc, [&] {
          per.push_back(thread_report(t.get()));
          h.merge(t->st.hist);
          auto& st = t->st;
          if (bc.size() < st.b_count.size()) {
            bc.resize(st.b_count.size(), 0);
            bl.resize(st.b_last.size(), 0);
          }
          for (size_t i = 0; i < st.b_count.size(); ++i) {
            bc[i] += st.b_count[i];
            bl[i] = std::max(bl[i], st.b_last[i]);
          }
          pr.set_value();
        });
        pr.get_future().wait();
      }
      r["threads"] = per;
      r["hist"] = h.sparse();
      r["hist_max_ns"] = h.max_ns;
      r["b_count"] = bc;
      r["b_last"] = bl;
      io.write(r.dump());
    } else if (cmd == "close") {
      on_all_threads([](tctx* t) {
        t->send_timer.cancel();
        for (auto* c : t->conns) {
          c->open = false;
          beast::error_code ec;
          c->ws.next_layer().close(ec);
        }
      });
      io.write("closed");
    } else if (cmd == "quit") {
      _exit(0);
    } else {
      io.write("error unknown command");
    }
  }
}

// ======================================================================================
// Parent process: orchestration and /proc measurement
// ======================================================================================

long clk_tck = 100;

/// utime+stime in seconds from a /proc stat file (a process's or one thread's); its
/// command name (between the parentheses) into *comm and stime alone (the kernel's part)
/// into *sys_s if given.
double stat_cpu_s(const std::string& path, std::string* comm = nullptr,
                  double* sys_s = nullptr) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  auto p = s.rfind(')');
  if (p == std::string::npos)
    return NAN;
  if (comm) {
    auto open = s.find('(');
    *comm = open < p ? s.substr(open + 1, p - open - 1) : std::string{};
  }
  std::istringstream in{s.substr(p + 2)};
  std::string field;
  double ut = 0, stt = 0;
  for (int i = 0; i < 13 && in >> field; ++i) {
    if (i == 11)
      ut = std::stod(field);
    if (i == 12)
      stt = std::stod(field);
  }
  if (sys_s)
    *sys_s = stt / static_cast<double>(clk_tck);
  return (ut + stt) / static_cast<double>(clk_tck);
}

double proc_cpu_s(int pid, double* sys_s = nullptr) {
  return stat_cpu_s("/proc/" + std::to_string(pid) + "/stat", nullptr, sys_s);
}

struct thread_cpu {
  std::string comm; // thread name, e.g. wsc.loop.0
  double cpu_s = 0;
};

/// CPU of each live thread of pid, by thread id.
std::map<std::string, thread_cpu> proc_thread_cpu(int pid) {
  std::map<std::string, thread_cpu> out;
  std::error_code ec;
  std::filesystem::directory_iterator tasks("/proc/" + std::to_string(pid) + "/task", ec);
  if (ec)
    return out;
  for (auto& task : tasks) {
    thread_cpu t;
    t.cpu_s = stat_cpu_s(task.path() / "stat", &t.comm);
    if (!std::isnan(t.cpu_s))
      out[task.path().filename().string()] = t;
  }
  return out;
}

// Voluntary context switches (a thread blocked: epoll_wait, a futex, a socket write) summed
// over the live threads of pid. /proc/PID/status alone counts only the main thread, hence
// the walk over task/*; threads that exit inside the window take their count with them.
double proc_voluntary_ctx_switches(int pid) {
  std::error_code ec;
  std::filesystem::directory_iterator tasks("/proc/" + std::to_string(pid) + "/task", ec);
  if (ec)
    return NAN;
  double sum = 0;
  for (auto& task : tasks) {
    std::ifstream f(task.path() / "status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        sum += std::stod(line.substr(sizeof "voluntary_ctxt_switches:" - 1));
        break;
      }
  }
  return sum;
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double status_kb(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0)
      return std::stod(line.substr(key.size() + 1));
  return NAN;
}

double machine_busy_s() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  double v[8] = {0};
  f >> cpu;
  for (double& x : v)
    f >> x;
  double total = 0;
  for (double x : v)
    total += x;
  return (total - v[3] - v[4]) / static_cast<double>(clk_tck);
}

struct watched {
  std::string name;
  int pid;
};

struct snapshot {
  uint64_t t = 0;
  std::map<std::string, double> cpu, sys, rss_kb, vol_ctx_switches;
  std::map<std::string, std::map<std::string, thread_cpu>> threads; // per process, by tid
  double loadgen_cpu = 0;
  double machine = 0;
  double slab_kb = 0;
};

struct parent {
  options o;
  std::vector<spec> specs;
  std::vector<watched> servers; // node1, node2, redis
  std::vector<pid_t> worker_pids;
  std::vector<std::unique_ptr<line_io>> workers;
  uint64_t hard_deadline = 0;
  int nprocs = 1;

  snapshot snap() {
    snapshot s;
    s.t = mono_ns();
    for (auto& w : servers) {
      s.cpu[w.name] = proc_cpu_s(w.pid, &s.sys[w.name]);
      s.vol_ctx_switches[w.name] = proc_voluntary_ctx_switches(w.pid);
      s.threads[w.name] = proc_thread_cpu(w.pid);
      s.rss_kb[w.name] = status_kb("/proc/" + std::to_string(w.pid) + "/status", "VmRSS");
    }
    double lg = self_cpu_s();
    for (auto pid : worker_pids)
      lg += proc_cpu_s(pid);
    s.loadgen_cpu = lg;
    s.machine = machine_busy_s();
    s.slab_kb = status_kb("/proc/meminfo", "Slab");
    return s;
  }

  /// Cores each thread name used between two snapshots (threads of one name summed; only
  /// threads alive in both and busy >= 1 % of a core): whether e.g. both wsc.loop.N work.
  static json thread_util(const std::map<std::string, thread_cpu>& a,
                          const std::map<std::string, thread_cpu>& b, double wall) {
    std::map<std::string, double> by_name;
    for (auto& [tid, t] : b)
      if (auto i = a.find(tid); i != a.end())
        by_name[t.comm] += t.cpu_s - i->second.cpu_s;
    json out = json::object();
    for (auto& [name, d] : by_name)
      if (d / wall >= 0.01)
        out[name] = round_to(d / wall, 3);
    return out;
  }

  json cpu_delta(const snapshot& a, const snapshot& b, uint64_t delivered) {
    double wall = static_cast<double>(b.t - a.t) / 1e9;
    json out{{"wall_s", round_to(wall, 3)}};
    json procs = json::object();
    double servers_cpu = 0, servers_sys = 0, all = 0, servers_ctx_switches = 0;
    for (auto& w : servers) {
      double d = b.cpu.at(w.name) - a.cpu.at(w.name);
      double sys = b.sys.at(w.name) - a.sys.at(w.name);
      double ctx_switches = b.vol_ctx_switches.at(w.name) - a.vol_ctx_switches.at(w.name);
      procs[w.name] = {{"pid", w.pid}, {"cpu_s", round_to(d, 3)}, {"util", round_to(d / wall, 3)},
                       {"cpu_us_per_msg", delivered ? json(round_to(d * 1e6 / static_cast<double>(delivered), 2)) : json(nullptr)},
                       {"sys_us_per_msg", delivered ? json(round_to(sys * 1e6 / static_cast<double>(delivered), 2)) : json(nullptr)},
                       {"ctx_switches", std::isnan(ctx_switches) ? json(nullptr) : json(static_cast<int64_t>(ctx_switches))},
                       {"threads", thread_util(a.threads.at(w.name), b.threads.at(w.name), wall)}};
      if (w.name != "redis") {
        servers_cpu += d;
        servers_sys += sys;
        servers_ctx_switches += ctx_switches;
      }
      all += d;
    }
    out["procs"] = procs;
    out["servers_cpu_s"] = round_to(servers_cpu, 3);
    auto per = [&](double x) { return delivered ? json(round_to(x * 1e6 / static_cast<double>(delivered), 2)) : json(nullptr); };
    out["servers_cpu_us_per_msg"] = per(servers_cpu);
    out["servers_plus_redis_cpu_us_per_msg"] = per(all);
    // The kernel's part (stime): socket reads and writes, epoll, wake-ups. What a
    // server pays per message in the kernel bounds how low its CPU per message can go.
    out["servers_sys_us_per_msg"] = per(servers_sys);
    // Voluntary switches per message show whether the nodes block and wake per message
    // (a wake-up costs microseconds) or drain batches per wake-up. Nodes only, not Redis.
    bool ctx_known = !std::isnan(servers_ctx_switches);
    out["servers_ctx_switches"] = ctx_known ? json(static_cast<int64_t>(servers_ctx_switches)) : json(nullptr);
    out["servers_ctx_switches_per_msg"] = ctx_known && delivered
                                              ? json(round_to(servers_ctx_switches / static_cast<double>(delivered), 3))
                                              : json(nullptr);
    double lg = b.loadgen_cpu - a.loadgen_cpu;
    out["loadgen"] = {{"cpu_s", round_to(lg, 3)}, {"util", round_to(lg / wall, 3)},
                      {"procs", nprocs}, {"threads_per_proc", o.threads},
                      {"cpu_us_per_msg", per(lg)},
                      {"saturation", round_to(lg / wall / (nprocs * o.threads), 3)}};
    double machine = b.machine - a.machine;
    out["other_cores"] = round_to((machine - all - lg) / wall, 3);
    out["machine_cores"] = round_to(machine / wall, 3);
    return out;
  }

  void check_deadline() {
    if (mono_ns() > hard_deadline)
      throw timeout_error("--max-seconds reached");
  }

  /// Seconds left until --max-seconds.
  double remaining_s() const {
    return static_cast<double>(hard_deadline - std::min(hard_deadline, mono_ns())) / 1e9;
  }

  uint64_t phase_deadline(double seconds) {
    return std::min(hard_deadline, mono_ns() + static_cast<uint64_t>(seconds * 1e9));
  }

  std::vector<std::string> all(const std::string& cmd, double timeout_s) {
    for (auto& w : workers)
      w->write(cmd);
    std::vector<std::string> out;
    auto dl = phase_deadline(timeout_s);
    for (auto& w : workers)
      out.push_back(w->read(dl));
    return out;
  }

  void start_workers() {
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    uint64_t per_proc_fds = rl.rlim_cur > 200 ? rl.rlim_cur - 100 : rl.rlim_cur;
    uint64_t need = (specs.size() + per_proc_fds - 1) / per_proc_fds;
    nprocs = o.procs > 0 ? o.procs : static_cast<int>(std::max<uint64_t>(1, need));
    if ((specs.size() + static_cast<uint64_t>(nprocs) - 1) / static_cast<uint64_t>(nprocs) > per_proc_fds)
      die(std::to_string(specs.size()) + " connections need --procs >= " + std::to_string(need)
          + " (fd limit " + std::to_string(rl.rlim_cur) + " per process)");
    std::cout.flush();
    std::cerr.flush();
    for (int w = 0; w < nprocs; ++w) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair failed");
      pid_t pid = fork();
      if (pid < 0)
        die("fork failed");
      if (pid == 0) {
        ::close(sv[0]);
        for (auto& x : workers)
          ::close(x->fd()); // the other workers' parent ends
        worker_main(o, specs, w, nprocs, sv[1]);
      }
      ::close(sv[1]);
      worker_pids.push_back(pid);
      workers.push_back(std::make_unique<line_io>(sv[0], sv[0]));
    }
  }

  void stop_workers() {
    for (auto& w : workers) {
      try {
        w->write("quit");
      } catch (...) {
      }
    }
    for (auto pid : worker_pids) {
      for (int i = 0; i < 100; ++i) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid)
          break;
        sleep_ms(10);
        if (i == 99) {
          kill(pid, SIGKILL);
          waitpid(pid, &st, 0);
        }
      }
    }
    worker_pids.clear();
  }

  // -- phases -------------------------------------------------------------------------

  struct connect_result {
    uint64_t ok = 0, failed = 0, port[2] = {0, 0};
    std::string first_error;
    double secs = 0;
  };

  connect_result connect_all() {
    connect_result r;
    auto t0 = mono_ns();
    for (auto& line : all("connect", o.connect_timeout_s + 90)) {
      auto j = json::parse(line);
      r.ok += j["ok"].get<uint64_t>();
      r.failed += j["failed"].get<uint64_t>();
      r.port[0] += j["port0"].get<uint64_t>();
      r.port[1] += j["port1"].get<uint64_t>();
      if (r.first_error.empty())
        r.first_error = j["first_error"].get<std::string>();
    }
    r.secs = static_cast<double>(mono_ns() - t0) / 1e9;
    if (r.failed)
      std::cerr << "wsc-loadgen: " << r.failed << " connections failed: " << r.first_error << "\n";
    return r;
  }

  uint64_t delivered_now(uint64_t* last = nullptr) {
    uint64_t d = 0, l = 0;
    for (auto& line : all("stat", 10)) {
      std::istringstream in{line};
      uint64_t a = 0, b = 0;
      in >> a >> b;
      d += a;
      l = std::max(l, b);
    }
    if (last)
      *last = l;
    return d;
  }

  /// Waits until `expected` arrived, or nothing new for drain_idle_s, or drain_max_s.
  uint64_t drain(uint64_t expected) {
    auto start = mono_ns();
    uint64_t last_count = ~0ull;
    auto last_change = start;
    for (;;) {
      check_deadline();
      auto d = delivered_now();
      auto now = mono_ns();
      if (d >= expected)
        return d;
      if (d != last_count) {
        last_count = d;
        last_change = now;
      }
      if (static_cast<double>(now - last_change) / 1e9 > o.drain_idle_s
          || static_cast<double>(now - start) / 1e9 > o.drain_max_s)
        return d;
      sleep_ms(20);
    }
  }

  struct report {
    histogram hist;
    json totals = json::object();
    std::vector<uint64_t> b_count, b_last;
    std::string first_error, first_close;
  };

  report collect() {
    report r;
    static const char* keys[] = {"delivered", "dup", "stale", "misrouted", "corrupt",
                                 "unexpected", "acks", "errors", "byes", "other",
                                 "closed_after_open", "sent", "send_skipped", "self_echo",
                                 "capped"};
    for (auto k : keys)
      r.totals[k] = 0;
    uint64_t max_lag = 0, first_send = ~0ull, last_send = 0, last_recv = 0, max_queue = 0;
    for (auto& line : all("report", 30)) {
      auto j = json::parse(line);
      r.hist.add_sparse(j["hist"]);
      r.hist.max_ns = std::max(r.hist.max_ns, j["hist_max_ns"].get<uint64_t>());
      auto bc = j["b_count"].get<std::vector<uint64_t>>();
      auto bl = j["b_last"].get<std::vector<uint64_t>>();
      if (r.b_count.size() < bc.size()) {
        r.b_count.resize(bc.size(), 0);
        r.b_last.resize(bc.size(), 0);
      }
      for (size_t i = 0; i < bc.size(); ++i) {
        r.b_count[i] += bc[i];
        r.b_last[i] = std::max(r.b_last[i], bl[i]);
      }
      for (auto& t : j["threads"]) {
        for (auto k : keys)
          r.totals[k] = r.totals[k].get<uint64_t>() + t[k].get<uint64_t>();
        max_lag = std::max(max_lag, t["max_lag_ns"].get<uint64_t>());
        max_queue = std::max(max_queue, t["max_queue"].get<uint64_t>());
        if (t["first_send"].get<uint64_t>())
          first_send = std::min(first_send, t["first_send"].get<uint64_t>());
        last_send = std::max(last_send, t["last_send"].get<uint64_t>());
        last_recv = std::max(last_recv, t["last_recv"].get<uint64_t>());
        if (r.first_error.empty())
          r.first_error = t["first_error"].get<std::string>();
        if (r.first_close.empty())
          r.first_close = t["first_close"].get<std::string>();
      }
    }
    r.totals["max_sched_lag_ms"] = round_to(static_cast<double>(max_lag) / 1e6, 2);
    r.totals["max_client_queue"] = max_queue;
    r.totals["first_send_ns"] = first_send == ~0ull ? 0 : first_send;
    r.totals["last_send_ns"] = last_send;
    r.totals["last_recv_ns"] = last_recv;
    return r;
  }

  json errors_json(const report& r) {
    json e = json::object();
    if (!r.first_error.empty())
      e["first_error_frame"] = r.first_error;
    if (!r.first_close.empty())
      e["first_close"] = r.first_close;
    return e;
  }

  // The first connect error and the first error frame / close of a run, if any.
  void add_problems(json& res, const report& r, const connect_result& c) {
    if (c.failed)
      res["first_connect_error"] = c.first_error;
    auto e = errors_json(r);
    if (!e.empty())
      res["problems"] = e;
  }

  // Every client connected; nothing lost, duplicated, misrouted or corrupt.
  static bool delivered_cleanly(const json& res, const connect_result& c) {
    return c.failed == 0 && res["lost"] == 0 && res["dup"] == 0 && res["misrouted"] == 0
           && res["corrupt"] == 0;
  }

  // -- scenarios ----------------------------------------------------------------------

  json s1() {
    sleep_ms(500);
    auto before = snap();
    auto c = connect_all();
    sleep_ms(o.settle_s * 1000);
    auto after = snap();
    json servers_j = json::object();
    double sum_delta = 0;
    size_t nsrv = 0;
    for (auto& w : servers)
      if (w.name != "redis")
        ++nsrv;
    for (size_t i = 0; i < nsrv; ++i) {
      auto& w = servers[i];
      // connections on node i: port i; with one pid for both ports, all of them
      uint64_t conns = 0;
      for (size_t p = 0; p < 2; ++p)
        if (std::min(p, nsrv - 1) == i)
          conns += c.port[p];
      double d = (after.rss_kb[w.name] - before.rss_kb[w.name]) * 1024;
      sum_delta += d;
      servers_j[w.name] = {{"pid", w.pid},
                           {"rss_before_mb", round_to(before.rss_kb[w.name] / 1024, 1)},
                           {"rss_after_mb", round_to(after.rss_kb[w.name] / 1024, 1)},
                           {"conns", conns},
                           {"bytes_per_conn", conns ? json(std::llround(d / static_cast<double>(conns))) : json(nullptr)}};
    }
    json res{{"params", {{"n", o.n}, {"settle_s", o.settle_s}}},
             {"connected", c.ok}, {"failed", c.failed}, {"first_error", c.first_error},
             {"connect_s", round_to(c.secs, 2)},
             {"connect_rate", round_to(static_cast<double>(c.ok + c.failed) / c.secs, 1)},
             {"servers", servers_j},
             {"servers_bytes_per_conn", c.ok ? json(std::llround(sum_delta / static_cast<double>(c.ok))) : json(nullptr)},
             {"kernel_slab_bytes_per_conn_pair", c.ok ? json(std::llround((after.slab_kb - before.slab_kb) * 1024 / static_cast<double>(c.ok))) : json(nullptr)}};
    for (auto& w : servers)
      if (w.name == "redis")
        res["redis"] = {{"rss_before_mb", round_to(before.rss_kb["redis"] / 1024, 1)},
                        {"rss_after_mb", round_to(after.rss_kb["redis"] / 1024, 1)},
                        {"bytes_per_conn", c.ok ? json(std::llround((after.rss_kb["redis"] - before.rss_kb["redis"]) * 1024 / static_cast<double>(c.ok))) : json(nullptr)}};
    double lg_rss = status_kb("/proc/self/status", "VmRSS");
    for (auto pid : worker_pids)
      lg_rss += status_kb("/proc/" + std::to_string(pid) + "/status", "VmRSS");
    res["loadgen_rss_mb"] = round_to(lg_rss / 1024, 1);
    res["connect_cpu"] = cpu_delta(before, after, 0);
    res["ok"] = c.failed == 0;
    all("close", 30);
    return res;
  }

  /// One open-loop s2 (or s4) step over connections already open.
  json push_step(scen kind, uint64_t epoch, double rate, uint64_t expected_per_msg,
                 uint64_t receivers_ok) {
    uint64_t total = static_cast<uint64_t>(std::llround(rate * o.duration));
    auto before = snap();
    uint64_t t0 = mono_ns() + 50'000'000; // workers start together
    all(std::string("run ") + (kind == scen::s2 ? "s2 " : "s4 ") + std::to_string(epoch) + " "
          + std::to_string(rate) + " " + std::to_string(total) + " " + std::to_string(t0),
        30);
    uint64_t send_deadline = std::min<uint64_t>(hard_deadline - 5'000'000'000ull,
                                      t0 + static_cast<uint64_t>((o.duration * 2 + 10) * 1e9));
    auto sent_state = all("wait_sent " + std::to_string(send_deadline), o.duration * 2 + 30);
    bool cut = std::any_of(sent_state.begin(), sent_state.end(), [](auto& s) { return s != "done"; });
    uint64_t expected = total * expected_per_msg;
    auto delivered = drain(expected);
    auto after = snap();
    auto r = collect();
    uint64_t sent = r.totals["sent"].get<uint64_t>();
    double send_s = static_cast<double>(r.totals["last_send_ns"].get<uint64_t>() - t0) / 1e9;
    auto last_recv = r.totals["last_recv_ns"].get<uint64_t>();
    json res{{"rate", rate}, {"duration_s", o.duration}, {"epoch", epoch},
             {"sent", sent}, {"send_s", round_to(send_s, 3)},
             {"achieved_send_rate", send_s > 0 ? round_to(static_cast<double>(sent) / send_s, 1) : 0.0},
             {"send_cut_at_deadline", cut},
             {"max_sched_lag_ms", r.totals["max_sched_lag_ms"]},
             {"max_client_queue", r.totals["max_client_queue"]},
             {"expected", expected}, {"delivered", r.totals["delivered"]},
             {"lost", static_cast<int64_t>(expected) - static_cast<int64_t>(r.totals["delivered"].get<uint64_t>())},
             {"dup", r.totals["dup"]}, {"misrouted", r.totals["misrouted"]},
             {"corrupt", r.totals["corrupt"]}, {"stale", r.totals["stale"]},
             {"unexpected", r.totals["unexpected"]}, {"acks", r.totals["acks"]},
             {"errors", r.totals["errors"]}, {"closed_after_open", r.totals["closed_after_open"]},
             {"send_skipped", r.totals["send_skipped"]}, {"self_echo", r.totals["self_echo"]},
             {"delivery_rate", last_recv > t0 ? round_to(static_cast<double>(delivered) / (static_cast<double>(last_recv - t0) / 1e9), 1) : 0.0},
             {"latency_ms", r.hist.summary()},
             {"cpu", cpu_delta(before, after, r.totals["delivered"].get<uint64_t>())},
             {"receivers_connected", receivers_ok}};
    auto e = errors_json(r);
    if (!e.empty())
      res["problems"] = e;
    return res;
  }

  json s2() {
    auto c = connect_all();
    sleep_ms(1000);
    auto step = push_step(scen::s2, 1, o.rate, 1, c.port[1]);
    json res{{"params", {{"rate", o.rate}, {"duration_s", o.duration}, {"senders", o.senders},
                         {"receivers", o.receivers}, {"payload_bytes", o.payload_bytes}}},
             {"connect_failed", c.failed}, {"connect_s", round_to(c.secs, 2)}};
    if (c.failed)
      res["first_connect_error"] = c.first_error;
    res.update(step);
    res["ok"] = c.failed == 0 && step["lost"] == 0 && step["dup"] == 0
                && step["misrouted"] == 0 && step["corrupt"] == 0 && step["errors"] == 0;
    all("close", 30);
    return res;
  }

  bool step_passes(const json& s) {
    return s["lost"] == 0 && s["dup"] == 0 && s["misrouted"] == 0 && s["corrupt"] == 0
           && !s["send_cut_at_deadline"].get<bool>() && s["latency_ms"]["n"].get<uint64_t>() > 0
           && s["latency_ms"]["p99"].get<double>() <= o.p99_ms;
  }

  json search() {
    auto c = connect_all();
    sleep_ms(1000);
    json steps = json::array();
    double lo = 0, hi = 0; // best pass, lowest fail
    double r = o.search_from;
    bool generator_limited = false;
    std::string stop = "steps exhausted";
    for (int i = 0; i < o.search_steps; ++i) {
      if (remaining_s() < o.duration * 2 + o.drain_max_s + 10) {
        stop = "time budget (--max-seconds)";
        break;
      }
      auto s = push_step(scen::s2, static_cast<uint64_t>(i + 1), r, 1, c.port[1]);
      bool pass = step_passes(s);
      double lg_sat = s["cpu"]["loadgen"]["saturation"].get<double>();
      bool lg_limited = s["achieved_send_rate"].get<double>() < 0.97 * r || lg_sat > 0.9;
      s["pass"] = pass;
      s["loadgen_limited"] = lg_limited;
      std::fprintf(stderr, "search step %d: rate %.0f -> %s (delivered %llu lost %lld p99 %.2f ms, servers %.2f us/msg, loadgen %.2f cores%s)\n",
                   i + 1, r, pass ? "pass" : "FAIL",
                   static_cast<unsigned long long>(s["delivered"].get<uint64_t>()),
                   static_cast<long long>(s["lost"].get<int64_t>()),
                   s["latency_ms"]["p99"].is_null() ? 0.0 : s["latency_ms"]["p99"].get<double>(),
                   s["cpu"]["servers_cpu_us_per_msg"].is_null() ? 0.0 : s["cpu"]["servers_cpu_us_per_msg"].get<double>(),
                   s["cpu"]["loadgen"]["util"].get<double>(), lg_limited ? ", GENERATOR-LIMITED" : "");
      steps.push_back(s);
      if (pass) {
        lo = std::max(lo, r);
      } else {
        hi = hi == 0 ? r : std::min(hi, r);
        if (lg_limited)
          generator_limited = true;
      }
      double next;
      if (hi == 0) {
        next = r * 2;
        if (next > o.search_max) {
          if (r >= o.search_max) {
            stop = "reached --search-max";
            break;
          }
          next = o.search_max;
        }
      } else {
        if (lo == 0) {
          next = hi / 2;
          if (next < 100) {
            stop = "even the lowest rate failed";
            break;
          }
        } else {
          if (hi / lo < 1.1) {
            stop = "converged (within 10%)";
            break;
          }
          next = std::sqrt(lo * hi);
        }
      }
      r = std::round(next / 100) * 100;
      sleep_ms(1000);
    }
    json res{{"params", {{"duration_s", o.duration}, {"senders", o.senders},
                         {"receivers", o.receivers}, {"payload_bytes", o.payload_bytes},
                         {"p99_ms", o.p99_ms}, {"from", o.search_from}, {"max", o.search_max},
                         {"max_steps", o.search_steps}}},
             {"connect_failed", c.failed}, {"best_rate", lo},
             {"lowest_failing_rate", hi == 0 ? json(nullptr) : json(hi)},
             {"stopped", stop}, {"generator_limited_failure", generator_limited},
             {"steps", steps}};
    res["ok"] = c.failed == 0;
    all("close", 30);
    return res;
  }

  json s3() {
    auto c = connect_all();
    sleep_ms(1000);
    uint64_t B = o.broadcasts;
    auto before = snap();
    all("run s3 1 0 " + std::to_string(B) + " 0", 30);
    std::vector<uint64_t> sent_ts(B, 0);
    uint64_t incomplete = 0;
    uint64_t pub_worker = 0; // spec 0 lives in worker 0
    for (uint64_t b = 0; b < B; ++b) {
      check_deadline();
      auto base = delivered_now();
      workers[pub_worker]->write("bcast 1 " + std::to_string(b));
      sent_ts[b] = std::stoull(workers[pub_worker]->read(phase_deadline(10)));
      auto dl = mono_ns() + 10'000'000'000ull;
      uint64_t got = 0;
      while ((got = delivered_now()) < base + c.ok && mono_ns() < dl) {
        check_deadline();
        sleep_ms(0.5);
      }
      if (got < base + c.ok)
        ++incomplete;
      sleep_ms(o.gap_ms);
    }
    sleep_ms(200);
    auto after = snap();
    auto r = collect();
    histogram comp;
    for (uint64_t b = 0; b < B && b < r.b_last.size(); ++b)
      if (r.b_last[b] > sent_ts[b])
        comp.add(r.b_last[b] - sent_ts[b]);
    uint64_t delivered = r.totals["delivered"].get<uint64_t>();
    auto comp_s = comp.summary();
    json res{{"params", {{"clients", o.clients}, {"broadcasts", B}, {"gap_ms", o.gap_ms},
                         {"payload_bytes", o.payload_bytes}}},
             {"connected", c.ok}, {"connect_failed", c.failed}, {"connect_s", round_to(c.secs, 2)},
             {"delivered", delivered}, {"expected", c.ok * B},
             {"missing", static_cast<int64_t>(c.ok * B) - static_cast<int64_t>(delivered)},
             {"lost", static_cast<int64_t>(c.ok * B) - static_cast<int64_t>(delivered)},
             {"dup", r.totals["dup"]}, {"misrouted", r.totals["misrouted"]},
             {"corrupt", r.totals["corrupt"]}, {"errors", r.totals["errors"]},
             {"closed_after_open", r.totals["closed_after_open"]},
             {"incomplete_broadcasts", incomplete},
             {"completion_ms", comp_s}, {"delivery_latency_ms", r.hist.summary()},
             {"fanout_deliveries_per_s_p50", comp.count ? json(std::llround(static_cast<double>(c.ok) / (comp.percentile_ms(50) / 1000))) : json(nullptr)},
             {"cpu", cpu_delta(before, after, delivered)}};
    add_problems(res, r, c);
    res["ok"] = delivered_cleanly(res, c);
    all("close", 30);
    return res;
  }

  json s4() {
    auto c = connect_all();
    auto jt0 = mono_ns();
    uint64_t joined = 0, jfailed = 0, jexp = 0;
    for (auto& line : all("join", 90)) {
      auto j = json::parse(line);
      joined += j["joined"].get<uint64_t>();
      jfailed += j["failed"].get<uint64_t>();
      jexp += j["expected"].get<uint64_t>();
    }
    double join_s = static_cast<double>(mono_ns() - jt0) / 1e9;
    if (joined != jexp)
      std::cerr << "wsc-loadgen: s4: " << joined << " of " << jexp << " joins acknowledged ("
                << jfailed << " failed)\n";
    sleep_ms(1000);
    auto step = push_step(scen::s4, 1, o.rate, o.group_size - (o.group_self ? 0 : 1), 0);
    step.erase("receivers_connected");
    // deliveries to the publishing connection itself (CONTRACT: it is a member's connection)
    step["publisher_self_deliveries"] = step["self_echo"];
    step["group_self_expected"] = o.group_self;
    json res{{"params", {{"groups", o.groups}, {"group_size", o.group_size}, {"rate", o.rate},
                         {"duration_s", o.duration}, {"payload_bytes", o.payload_bytes}}},
             {"connect_failed", c.failed}, {"connect_s", round_to(c.secs, 2)},
             {"joined", joined}, {"join_failed", jfailed}, {"join_s", round_to(join_s, 2)}};
    if (c.failed)
      res["first_connect_error"] = c.first_error;
    res.update(step);
    res["ok"] = c.failed == 0 && jfailed == 0 && joined == jexp && step["lost"] == 0
                && step["dup"] == 0 && step["misrouted"] == 0 && step["corrupt"] == 0
                && step["errors"] == 0;
    all("close", 30);
    return res;
  }

  /// Threads of the first server process named wsc.loop.N: the event loops it runs.
  uint64_t node_loops(const snapshot& s) const {
    uint64_t n = 0;
    if (!servers.empty())
      for (auto& [tid, t] : s.threads.at(servers.front().name))
        n += t.comm.rfind("wsc.loop.", 0) == 0 ? 1 : 0;
    return n;
  }

  /// Saturated local fan-out on one node: every client on port 0, the first --senders
  /// broadcast closed loop (--window in flight each). After --warmup, the deliveries the
  /// clients count over --duration give deliveries/s; the node's CPU (and per thread) is
  /// taken over the same window. Then sending stops and everything sent must arrive.
  json fanout() {
    auto c = connect_all();
    sleep_ms(1000);
    if (remaining_s() < o.warmup_s + o.duration + o.drain_max_s + 10)
      throw timeout_error("--max-seconds too short for --warmup + --duration + --drain-max");
    all("run fanout 1 0 " + std::to_string(o.max_broadcasts) + " 0", 30);
    sleep_ms(o.warmup_s * 1000);
    auto d0 = delivered_now();
    auto before = snap();
    sleep_ms(o.duration * 1000);
    auto after = snap();
    auto d1 = delivered_now();
    uint64_t in_window = d1 - d0;
    double window_s = static_cast<double>(after.t - before.t) / 1e9;
    uint64_t sent = 0;
    for (auto& line : all("stop", 30))
      sent += std::stoull(line);
    uint64_t expected = sent * c.ok; // the senders' own connections get theirs too
    drain(expected);
    auto r = collect();
    uint64_t delivered = r.totals["delivered"].get<uint64_t>();
    json res{{"params", {{"clients", o.clients}, {"senders", o.senders}, {"window", o.window},
                         {"warmup_s", o.warmup_s}, {"duration_s", o.duration},
                         {"payload_bytes", o.payload_bytes}, {"max_broadcasts", o.max_broadcasts},
                         {"io_threads",
                          o.node_io_threads ? json(o.node_io_threads) : json(nullptr)}}},
             {"connected", c.ok}, {"connect_failed", c.failed}, {"connect_s", round_to(c.secs, 2)},
             {"node_loops", node_loops(before)},
             {"window_s", round_to(window_s, 3)}, {"window_deliveries", in_window},
             {"deliveries_per_s", round_to(static_cast<double>(in_window) / window_s, 1)},
             {"broadcasts_sent", sent}, {"expected", expected}, {"delivered", delivered},
             {"lost", static_cast<int64_t>(expected) - static_cast<int64_t>(delivered)},
             {"dup", r.totals["dup"]}, {"misrouted", r.totals["misrouted"]},
             {"corrupt", r.totals["corrupt"]}, {"errors", r.totals["errors"]},
             {"closed_after_open", r.totals["closed_after_open"]},
             {"send_skipped", r.totals["send_skipped"]},
             {"cap_reached", r.totals["capped"].get<uint64_t>() > 0},
             {"max_client_queue", r.totals["max_client_queue"]},
             {"latency_ms", r.hist.summary()}, {"cpu", cpu_delta(before, after, in_window)}};
    add_problems(res, r, c);
    res["ok"] = delivered_cleanly(res, c) && res["errors"] == 0 && res["closed_after_open"] == 0
                && !res["cap_reached"].get<bool>();
    all("close", 30);
    return res;
  }
};

parent* the_parent = nullptr;

void on_alarm(int) {
  // last resort if a phase deadline did not catch it: never outlive --max-seconds
  if (the_parent)
    for (auto pid : the_parent->worker_pids)
      kill(pid, SIGKILL);
  const char msg[] = "wsc-loadgen: hard time limit reached, exiting\n";
  auto r = ::write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

std::string fmt(const json& v, int digits = 2) {
  if (v.is_null())
    return "-";
  if (v.is_number_float()) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", digits, v.get<double>());
    return b;
  }
  return v.dump();
}

void print_table(const json& r) {
  auto& e = std::cerr;
  const std::string sc = r["scenario"];
  e << "== wsc-loadgen " << sc << " (" << r["system"].get<std::string>() << ")";
  if (!r["label"].is_null())
    e << " label=" << r["label"].get<std::string>();
  e << "\n";
  auto cpu_line = [&](const json& cpu) {
    e << "  cpu us/msg:";
    for (auto& [name, p] : cpu["procs"].items())
      e << " " << name << "=" << fmt(p["cpu_us_per_msg"]);
    e << " servers=" << fmt(cpu["servers_cpu_us_per_msg"])
      << " ctxsw/msg=" << fmt(cpu["servers_ctx_switches_per_msg"])
      << " | loadgen " << fmt(cpu["loadgen"]["util"]) << " cores (" << fmt(cpu["loadgen"]["saturation"])
      << " of its " << cpu["loadgen"]["procs"].get<int>() * cpu["loadgen"]["threads_per_proc"].get<int>()
      << " threads), other " << fmt(cpu["other_cores"]) << " cores\n";
  };
  if (sc == "s1") {
    e << "  connected " << r["connected"] << " failed " << r["failed"] << " in " << fmt(r["connect_s"])
      << " s; server bytes/conn " << fmt(r["servers_bytes_per_conn"]);
    for (auto& [name, s] : r["servers"].items())
      e << " " << name << "=" << fmt(s["bytes_per_conn"]);
    if (r.contains("redis"))
      e << " redis=" << fmt(r["redis"]["bytes_per_conn"]);
    e << "; slab/pair " << fmt(r["kernel_slab_bytes_per_conn_pair"]) << "\n";
  } else if (sc == "s2" || sc == "s4") {
    e << "  offered " << fmt(r["rate"], 0) << "/s achieved " << fmt(r["achieved_send_rate"], 0)
      << "/s; delivered " << r["delivered"] << "/" << r["expected"] << " lost " << r["lost"]
      << " dup " << r["dup"] << " misrouted " << r["misrouted"] << "; latency ms p50 "
      << fmt(r["latency_ms"]["p50"], 3) << " p99 " << fmt(r["latency_ms"]["p99"], 3) << " max "
      << fmt(r["latency_ms"]["max"], 3) << "; sched lag max " << fmt(r["max_sched_lag_ms"]) << " ms\n";
    if (r.value("send_cut_at_deadline", false))
      e << "  SENDING CUT SHORT by --max-seconds: not a complete run\n";
    cpu_line(r["cpu"]);
  } else if (sc == "s3") {
    e << "  " << r["connected"] << " clients, delivered " << r["delivered"] << "/" << r["expected"]
      << " dup " << r["dup"] << "; completion ms p50 " << fmt(r["completion_ms"]["p50"], 3)
      << " p99 " << fmt(r["completion_ms"]["p99"], 3) << "; delivery p50 "
      << fmt(r["delivery_latency_ms"]["p50"], 3) << " ms; " << fmt(r["fanout_deliveries_per_s_p50"])
      << " deliveries/s\n";
    cpu_line(r["cpu"]);
  } else if (sc == "fanout") {
    auto& p = r["params"];
    auto node = r["cpu"]["procs"].value("node1",
                                        json{{"util", nullptr}, {"threads", json::object()}});
    e << "  " << r["connected"] << " clients on one node (io-threads " << fmt(p["io_threads"])
      << ", " << r["node_loops"] << " wsc.loop threads), " << p["senders"] << " senders x "
      << p["window"] << " in flight: " << fmt(r["deliveries_per_s"], 0) << " deliveries/s over "
      << fmt(r["window_s"]) << " s; node " << fmt(node["util"]) << " cores "
      << node["threads"].dump()
      << "\n  after the window: delivered " << r["delivered"] << "/" << r["expected"] << " lost "
      << r["lost"] << " dup " << r["dup"] << "; latency ms p50 " << fmt(r["latency_ms"]["p50"], 3)
      << " p99 " << fmt(r["latency_ms"]["p99"], 3)
      << (r["cap_reached"].get<bool>() ? "; --max-broadcasts REACHED: raise it" : "") << "\n";
    cpu_line(r["cpu"]);
  } else if (sc == "search") {
    e << "  best rate with 0 lost and p99 <= " << fmt(r["params"]["p99_ms"]) << " ms: "
      << fmt(r["best_rate"], 0) << "/s (lowest failing " << fmt(r["lowest_failing_rate"], 0)
      << "; " << r["stopped"].get<std::string>() << ")"
      << (r["generator_limited_failure"].get<bool>() ? " [a failing step was generator-limited]" : "")
      << "\n";
  }
  if (r.contains("problems"))
    e << "  problems: " << r["problems"].dump() << "\n";
}

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  clk_tck = sysconf(_SC_CLK_TCK);
  parent P;
  P.o = parse_args(argc, argv);
  auto& o = P.o;
  P.specs = build_specs(o);
  for (size_t i = 0; i < o.server_pids.size(); ++i)
    P.servers.push_back({"node" + std::to_string(i + 1), o.server_pids[i]});
  if (o.redis_pid)
    P.servers.push_back({"redis", o.redis_pid});
  auto started = mono_ns();
  P.hard_deadline = started + static_cast<uint64_t>(o.max_seconds * 1e9);
  the_parent = &P;
  std::signal(SIGALRM, on_alarm);
  alarm(static_cast<unsigned>(std::ceil(o.max_seconds)) + 10);
  P.start_workers();
  json res;
  int rc = 0;
  char ts[64];
  {
    auto now = std::time(nullptr);
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  }
  try {
    if (o.scenario == "s1")
      res = P.s1();
    else if (o.scenario == "s2")
      res = P.s2();
    else if (o.scenario == "s3")
      res = P.s3();
    else if (o.scenario == "s4")
      res = P.s4();
    else if (o.scenario == "fanout")
      res = P.fanout();
    else
      res = P.search();
  } catch (const std::exception& e) {
    std::cerr << "wsc-loadgen: " << e.what() << "\n";
    res = {{"error", e.what()}, {"ok", false}};
    rc = 3;
  }
  P.stop_workers();
  json line{{"ts", ts}, {"system", o.system}, {"generator", "wsc-loadgen"},
            {"scenario", o.scenario}, {"label", o.label.empty() ? json(nullptr) : json(o.label)},
            {"host", {{"cpus", std::thread::hardware_concurrency()}}},
            {"elapsed_s", round_to(static_cast<double>(mono_ns() - started) / 1e9, 2)}};
  line.update(res);
  auto s = line.dump();
  std::cout << s << std::endl;
  if (!o.out.empty()) {
    std::ofstream f(o.out, std::ios::app);
    f << s << "\n";
  }
  if (rc == 0)
    print_table(line);
  if (rc == 0 && o.check && !line.value("ok", false))
    rc = 1;
  return rc;
}
