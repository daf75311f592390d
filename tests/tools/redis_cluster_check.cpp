// wsc-redis-cluster-check: exercises adapters/redis_cluster against a real
// Redis Cluster (tests/integration/test_redis_cluster_client.py).
//
//   wsc-redis-cluster-check --seeds 127.0.0.1:7000[,...] [--password P]
//       [--keys N] [--batch B] [--rounds R] [--seconds S] [--prefix P]
//       [--retry-deadline-ms D]
//
// Each round SETs N keys (the first N of a list with one key per hash slot,
// so N = 16384 touches every slot; every second one by EVALSHA of a script
// loaded on every master, reloaded on NOSCRIPT) in pipelined batches of B,
// then GETs them back and compares. One JSON line per round on stdout, then a
// summary line. Stops after R rounds or S seconds, whichever comes first, or
// after the current round on SIGTERM. Exit 0 when the last round was fully ok.

#include "adapters/redis_cluster.hpp"
#include "protocol/error.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace wsc;
using std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void request_stop(int) {
  stop_requested = 1;
}

long long mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             steady_clock::now().time_since_epoch())
      .count();
}

std::string json_text(const std::string& x) {
  std::string out = "\"";
  for (char c : x)
    if (c == '"' || c == '\\')
      out += std::string{'\\', c};
    else if (static_cast<unsigned char>(c) < 0x20)
      out += ' ';
    else
      out += c;
  return out + "\"";
}

/// One key per hash slot, in the order they were found (a random spread).
std::vector<std::string> keys_over_all_slots(const std::string& prefix) {
  std::vector<std::string> result;
  std::vector<bool> seen(redis_slot_count, false);
  for (uint64_t i = 0; result.size() < redis_slot_count; ++i) {
    auto key = prefix + std::to_string(i);
    if (auto slot = key_slot(key); !seen[slot]) {
      seen[slot] = true;
      result.push_back(std::move(key));
    }
  }
  return result;
}

/// Sets a key from a Lua script: EVALSHA through the cluster client.
constexpr const char* set_script = "return redis.call('SET', KEYS[1], ARGV[1])";

/// The SHA1 of `set_script` (the same on every master).
std::string set_sha;

bool reload_script(redis_cluster& cluster) {
  auto sha = cluster.load_script(set_script);
  if (sha)
    set_sha = *sha;
  return static_cast<bool>(sha);
}

struct round_result {
  size_t reloads = 0;
  size_t ok = 0;
  size_t failed = 0;
  size_t mismatched = 0;
  std::string first_error;
};

/// Runs `cmds` in batches; `check(i, reply)` judges the reply of command i.
template<class Check>
void run_batches(redis_cluster& cluster,
                 const std::vector<redis_cluster_command>& cmds, size_t batch,
                 round_result& out, Check check) {
  for (size_t first = 0; first < cmds.size(); first += batch) {
    auto last = std::min(cmds.size(), first + batch);
    std::vector<redis_cluster_command> part(cmds.begin() + first,
                                            cmds.begin() + last);
    auto replies = cluster.execute(part);
    // A master without our script (a promoted replica, a restart): load it
    // on every master and run the batch's NOSCRIPT commands once more.
    std::vector<size_t> noscript;
    for (size_t i = 0; i < replies.size(); ++i)
      if (replies[i] && is_noscript(**replies[i]))
        noscript.push_back(i);
    if (!noscript.empty() && reload_script(cluster)) {
      ++out.reloads;
      std::vector<redis_cluster_command> retry;
      for (auto i : noscript)
        retry.push_back(part[i]);
      auto again = cluster.execute(retry);
      for (size_t j = 0; j < noscript.size(); ++j)
        replies[noscript[j]] = std::move(again[j]);
    }
    for (size_t i = 0; i < replies.size(); ++i) {
      auto& r = replies[i];
      if (!r || (*r)->type == REDIS_REPLY_ERROR) {
        ++out.failed;
        if (out.first_error.empty())
          out.first_error =
              r ? std::string{(*r)->str, (*r)->len} : error_message(r.error());
      } else if (check(first + i, **r)) {
        ++out.ok;
      } else {
        ++out.mismatched;
      }
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  block_sigpipe_in_this_thread();
  std::signal(SIGTERM, request_stop);
  std::string seeds;
  std::string password;
  std::string prefix = "wsc-check:";
  size_t keys = redis_slot_count;
  size_t batch = 256;
  long rounds = 1;
  double seconds = 3600;
  long retry_deadline = 5000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    std::string value = argv[i + 1];
    if (name == "--seeds")
      seeds = value;
    else if (name == "--password")
      password = value;
    else if (name == "--prefix")
      prefix = value;
    else if (name == "--keys")
      keys = std::min<size_t>(std::strtoul(value.c_str(), nullptr, 10),
                              redis_slot_count);
    else if (name == "--batch")
      batch = std::max<size_t>(1, std::strtoul(value.c_str(), nullptr, 10));
    else if (name == "--rounds")
      rounds = std::strtol(value.c_str(), nullptr, 10);
    else if (name == "--seconds")
      seconds = std::strtod(value.c_str(), nullptr);
    else if (name == "--retry-deadline-ms")
      retry_deadline = std::strtol(value.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", name.c_str());
      return 2;
    }
  }
  auto cfg = parse_redis_cluster_url("cluster://" + seeds);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", error_message(cfg.error()).c_str());
    return 2;
  }
  cfg->password = password;
  cfg->retry_deadline = std::chrono::milliseconds{retry_deadline};
  cfg->io_timeout = std::chrono::milliseconds{1000};
  cfg->connect_timeout = std::chrono::milliseconds{500};
  auto cluster = redis_cluster::open(*cfg);
  if (!cluster) {
    std::fprintf(stderr, "%s\n", error_message(cluster.error()).c_str());
    return 1;
  }
  std::printf(
      "{\"masters\":%zu,\"ranges\":%zu}\n",
      [&] {
        std::vector<redis_endpoint> m;
        for (auto& r : cluster->slots())
          if (std::find(m.begin(), m.end(), r.master) == m.end())
            m.push_back(r.master);
        return m.size();
      }(),
      cluster->slots().size());
  if (!reload_script(*cluster)) {
    std::fprintf(stderr, "cannot load the script on every master\n");
    return 1;
  }
  auto names = keys_over_all_slots(prefix);
  names.resize(keys);
  auto start = steady_clock::now();
  bool last_ok = false;
  long done = 0;
  size_t total_failed = 0;
  size_t total_mismatched = 0;
  size_t total_reloads = 0;
  for (; done < rounds && stop_requested == 0 &&
         steady_clock::now() - start < std::chrono::duration<double>(seconds);
       ++done) {
    auto begin = mono_ms();
    std::vector<std::string> values;
    values.reserve(keys);
    for (size_t i = 0; i < keys; ++i)
      values.push_back(std::to_string(done) + ":" + std::to_string(i));
    std::vector<redis_cluster_command> sets;
    std::vector<redis_cluster_command> gets;
    for (size_t i = 0; i < keys; ++i) {
      if (i % 2 == 0)
        sets.push_back({names[i], {"SET", names[i], values[i]}});
      else
        sets.push_back(
            {names[i], {"EVALSHA", set_sha, "1", names[i], values[i]}});
      gets.push_back({names[i], {"GET", names[i]}});
    }
    round_result res;
    // A GET is judged only if its SET was acknowledged: "mismatched" then
    // means an acked write was lost (e.g. by a failover).
    std::vector<bool> written(keys, false);
    run_batches(*cluster, sets, batch, res, [&](size_t i, const redisReply& x) {
      written[i] = x.type == REDIS_REPLY_STATUS;
      return written[i];
    });
    run_batches(*cluster, gets, batch, res, [&](size_t i, const redisReply& x) {
      return !written[i] || (x.type == REDIS_REPLY_STRING &&
                             std::string_view{x.str, x.len} == values[i]);
    });
    last_ok = res.failed == 0 && res.mismatched == 0;
    total_failed += res.failed;
    total_mismatched += res.mismatched;
    total_reloads += res.reloads;
    std::printf("{\"round\":%ld,\"start\":%lld,\"end\":%lld,\"ok\":%zu,"
                "\"failed\":%zu,\"mismatched\":%zu,\"moved\":%llu,"
                "\"ask\":%llu,\"reloads\":%zu,\"error\":%s}\n",
                done, begin, mono_ms(), res.ok, res.failed, res.mismatched,
                static_cast<unsigned long long>(cluster->stats().moved),
                static_cast<unsigned long long>(cluster->stats().ask),
                res.reloads, json_text(res.first_error).c_str());
    std::fflush(stdout);
  }
  auto& st = cluster->stats();
  std::printf("{\"summary\":true,\"rounds\":%ld,\"last_ok\":%s,\"failed\":%zu,"
              "\"mismatched\":%zu,\"moved\":%llu,\"ask\":%llu,"
              "\"refreshes\":%llu,\"connects\":%llu,\"retries\":%llu,"
              "\"reloads\":%zu}\n",
              done, last_ok ? "true" : "false", total_failed, total_mismatched,
              static_cast<unsigned long long>(st.moved),
              static_cast<unsigned long long>(st.ask),
              static_cast<unsigned long long>(st.refreshes),
              static_cast<unsigned long long>(st.connects),
              static_cast<unsigned long long>(st.retries), total_reloads);
  return last_ok ? 0 : 1;
}
