#include "adapters/redis_append_batch.hpp"

#include <cstdlib>
#include <cstring>
#include <iterator>
#include <utility>

namespace wsc::redis_store_impl {

namespace {

size_t bytes_of(const std::vector<std::string>& args) {
  size_t n = 0;
  for (auto& x : args)
    n += x.size();
  return n;
}

bool packable(const redis_command& cmd) {
  return cmd.lua == redis_scripts::script::append &&
         cmd.args.size() > append_args::uids_begin;
}

} // namespace

void pack_appends(const std::vector<redis_command*>& staged,
                  const append_batch_limits& limits, packed_stage& out) {
  out.clear();
  redis_command* batch = nullptr;
  size_t messages = 0;
  size_t uids = 0;
  size_t bytes = 0;
  for (auto cmd : staged) {
    if (!packable(*cmd)) {
      batch = nullptr;
      out.commands.push_back(cmd);
      out.spans.push_back(1);
      continue;
    }
    auto& args = cmd->args;
    auto n = args.size() - append_args::uids_begin;
    auto size = bytes_of(args);
    if (batch == nullptr || messages == limits.max_messages ||
        uids + n > limits.max_uids || bytes + size > limits.max_bytes) {
      batch = &out.batches.emplace_back();
      batch->lua = redis_scripts::script::append_batch;
      batch->key = cmd->key;
      std::move(args.begin(), args.begin() + append_args::shared,
                std::back_inserter(batch->args));
      out.commands.push_back(batch);
      out.spans.push_back(0);
      messages = uids = bytes = 0;
    }
    batch->args.push_back(std::move(args[append_args::entry]));
    batch->args.push_back(std::to_string(n));
    std::move(args.begin() + append_args::uids_begin, args.end(),
              std::back_inserter(batch->args));
    batch->wait = batch->wait || cmd->wait;
    ++out.spans.back();
    ++messages;
    uids += n;
    bytes += size;
  }
  if (out.batches.empty())
    out.spans.clear();
}

void unpack_replies(const packed_stage& stage,
                    std::vector<caf::expected<redis_reply_ptr>>& replies,
                    std::vector<int64_t>& replicas) {
  if (stage.spans.empty())
    return;
  std::vector<caf::expected<redis_reply_ptr>> out;
  std::vector<int64_t> counts;
  for (size_t i = 0; i < stage.commands.size(); ++i) {
    auto span = stage.spans[i];
    counts.insert(counts.end(), span, replicas[i]);
    auto& r = replies[i];
    if (stage.commands[i]->lua != redis_scripts::script::append_batch) {
      out.push_back(std::move(r));
      continue;
    }
    if (!r) {
      for (size_t k = 0; k < span; ++k)
        out.emplace_back(r.error());
      continue;
    }
    auto x = r->get();
    if (x != nullptr && x->type == REDIS_REPLY_ARRAY && x->elements == span) {
      // The elements change owner: the batch's reply frees the rest.
      for (size_t k = 0; k < span; ++k)
        out.emplace_back(
            redis_reply_ptr{std::exchange(x->element[k], nullptr)});
      continue;
    }
    auto text = x != nullptr && x->type == REDIS_REPLY_ERROR && x->str
                    ? std::string_view{x->str, x->len}
                    : std::string_view{"ERR unexpected reply to append_batch"};
    for (size_t k = 0; k < span; ++k)
      out.emplace_back(make_error_reply(text));
  }
  replies = std::move(out);
  replicas = std::move(counts);
}

redis_reply_ptr make_error_reply(std::string_view text) {
  // hiredis frees replies with free() (freeReplyObject).
  auto r = static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)));
  if (r == nullptr)
    throw std::bad_alloc{};
  r->type = REDIS_REPLY_ERROR;
  r->str = static_cast<char*>(std::malloc(text.size() + 1));
  if (r->str == nullptr) {
    std::free(r);
    throw std::bad_alloc{};
  }
  std::memcpy(r->str, text.data(), text.size());
  r->str[text.size()] = '\0';
  r->len = text.size();
  return redis_reply_ptr{r};
}

} // namespace wsc::redis_store_impl
