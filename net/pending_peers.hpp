#pragma once

// -- Cluster connections that have not introduced themselves yet -------------
//
// A TCP connection to the cluster port costs a descriptor (and with TLS an
// OpenSSL session) before its peer has sent anything: without a bound,
// idle connections exhaust the descriptors and new peers, Redis and
// clients are refused. A connection counts here from its start until its
// first BASP message (a peer's handshake) has been accepted. Each address
// (`address_key`) keeps at most `per_address` of them and all addresses
// `total`: a newcomer beyond either displaces the oldest (of its address,
// else of all), so a stranger's connections push out its own first and a
// real peer's handshake, which takes milliseconds, gets through. None
// stays longer than `deadline`.

#include <chrono>
#include <cstddef>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace wsc::net {

class pending_peers {
public:
  using clock = std::chrono::steady_clock;

  /// Identifies a connection (the scribe serving it).
  using key = const void*;

  struct limits {
    size_t per_address = 8;
    size_t total = 256;
    std::chrono::milliseconds deadline{10'000};
  };

  explicit pending_peers(limits bounds) : bounds_(bounds) {
    // nop
  }

  /// Counts a new connection from `address`; returns the connections it
  /// displaces (to be closed by the caller).
  std::vector<key> add(key conn, const std::string& address,
                       clock::time_point now);

  /// The connection introduced itself or closed.
  void remove(key conn);

  /// Removes and returns the connections older than the deadline.
  std::vector<key> expired(clock::time_point now);

  size_t size() const noexcept { return order_.size(); }

private:
  struct entry {
    key conn;
    std::string address;
    clock::time_point since;
  };

  using list = std::list<entry>;

  void erase(list::iterator pos);

  limits bounds_;
  /// Oldest first.
  list order_;
  std::unordered_map<key, list::iterator> index_;
  std::unordered_map<std::string, size_t> per_address_;
};

} // namespace wsc::net
