#include "flow/idem_waits.hpp"

namespace wsc {

idem_waits::verdict idem_waits::enter(const std::string& key) {
  auto [i, added] = waiting_.try_emplace(key);
  if (added)
    return verdict::first;
  return i->second.size() < max_waiting ? verdict::waits : verdict::refused;
}

void idem_waits::wait(const std::string& key, resume_fn resume) {
  waiting_[key].push_back(std::move(resume));
}

std::vector<idem_waits::resume_fn> idem_waits::done(const std::string& key) {
  std::vector<resume_fn> result;
  if (auto i = waiting_.find(key); i != waiting_.end()) {
    result = std::move(i->second);
    waiting_.erase(i);
  }
  return result;
}

std::string idem_waits::key(const std::string& from, const std::string& idem) {
  return std::to_string(from.size()) + ':' + from + ':' + idem;
}

} // namespace wsc
