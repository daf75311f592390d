#include "adapters/redis_round_trip.hpp"

#include "protocol/error.hpp"

#include <algorithm>
#include <cstddef>
#include <utility>

namespace wsc::redis_store_impl {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

redis_round_trip::redis_round_trip(std::vector<const redis_command*> commands,
                                   wait_settings wait, argv_fn argv_of)
    : commands_(std::move(commands)), settings_(wait),
      argv_of_(std::move(argv_of)), replicas_(commands_.size(), -1) {
  argvs_.resize(commands_.size());
  for (size_t i = 0; i < commands_.size(); ++i)
    argv_of_(*commands_[i], argvs_[i]);
  // One WAIT after the last command confirms every write before it.
  auto durable =
      std::any_of(commands_.begin(), commands_.end(),
                  [](const redis_command* cmd) { return cmd->wait; });
  if (settings_.replicas > 0 && durable) {
    wait_ = std::make_unique<const redis_wait>(settings_.replicas,
                                               settings_.timeout);
    argvs_.push_back(wait_->argv());
  }
}

void redis_round_trip::take(reply_list got) {
  auto n = commands_.size();
  // The commands ran; without a WAIT answer they count as on no replica.
  int64_t confirmed = 0;
  if (waits() && got.size() > n && got[n] && *got[n])
    confirmed = parse_wait_reply(**got[n]).value_or(0);
  got.erase(got.begin() + static_cast<std::ptrdiff_t>(std::min(got.size(), n)),
            got.end());
  while (got.size() < n) // not from a sender that keeps its word
    got.emplace_back(make_error(ec::internal, "Redis: a reply is missing"));
  std::vector<int64_t> counts(n, -1);
  if (waits())
    for (size_t i = 0; i < n; ++i)
      if (commands_[i]->wait && got[i])
        counts[i] = confirmed;
  take(std::move(got), std::move(counts));
}

void redis_round_trip::take(reply_list got, std::vector<int64_t> replicas) {
  replies_ = std::move(got);
  replicas_ = std::move(replicas);
  find_noscript();
}

void redis_round_trip::fail(const caf::error& why) {
  reply_list got;
  got.reserve(commands_.size());
  for (size_t i = 0; i < commands_.size(); ++i)
    got.emplace_back(why);
  take(std::move(got), std::vector<int64_t>(commands_.size(), -1));
}

redis_round_trip redis_round_trip::retry() const {
  std::vector<const redis_command*> again;
  again.reserve(noscript_.size());
  for (auto i : noscript_)
    again.push_back(commands_[i]);
  return redis_round_trip{std::move(again), settings_, argv_of_};
}

void redis_round_trip::merge(redis_round_trip&& retry) {
  auto n = std::min(noscript_.size(), retry.replies_.size());
  for (size_t k = 0; k < n; ++k) {
    replies_[noscript_[k]] = std::move(retry.replies_[k]);
    replicas_[noscript_[k]] = retry.replicas_[k];
  }
  find_noscript();
}

void redis_round_trip::refuse(const caf::error& why) {
  for (auto i : noscript_) {
    replies_[i] = why;
    replicas_[i] = -1;
  }
  noscript_.clear();
}

void redis_round_trip::find_noscript() {
  noscript_.clear();
  for (size_t i = 0; i < replies_.size(); ++i)
    if (replies_[i] && *replies_[i] && is_noscript(**replies_[i]))
      noscript_.push_back(i);
}

milliseconds next_retry_interval(milliseconds current,
                                 steady_clock::duration took, milliseconds base,
                                 milliseconds max) {
  if (took < base)
    return base;
  return std::min(std::max(current * 2, base), max);
}

} // namespace wsc::redis_store_impl
