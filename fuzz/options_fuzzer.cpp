// libFuzzer target: wsc::parse_options (command line and config file),
// wsc::parse_redis_url, wsc::parse_duration and wsc::parse_endpoint.
//
// Input: "arg\narg\n...\0config file text". Arguments naming a config file
// are pointed at a private temporary file holding the config text, so the
// fuzzer never reads other files. Invariants: a parsed Redis URL never shows
// its password in redacted(); parsed durations are not negative; parsed
// options pass validate().

#include "config/options.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

const std::string& config_path() {
  static const std::string path = [] {
    char buf[] = "/tmp/wsc-fuzz-options-XXXXXX";
    int fd = mkstemp(buf);
    if (fd >= 0)
      close(fd);
    std::string p = buf;
    std::atexit([] { std::remove(config_path().c_str()); });
    return p;
  }();
  return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nul = in.find('\0');
  auto arg_text = in.substr(0, nul);
  auto config_text = nul == std::string_view::npos ? std::string_view{}
                                                   : in.substr(nul + 1);
  {
    std::ofstream out{config_path(), std::ios::trunc | std::ios::binary};
    out.write(config_text.data(), static_cast<std::streamsize>(config_text.size()));
  }
  std::vector<std::string> args;
  while (!arg_text.empty()) {
    auto end = arg_text.find('\n');
    std::string arg{arg_text.substr(0, end)};
    if (arg.find("config-file") != std::string::npos)
      arg = "--config-file=" + config_path();
    args.push_back(std::move(arg));
    if (end == std::string_view::npos)
      break;
    arg_text = arg_text.substr(end + 1);
  }
  for (auto& arg : args) {
    auto value = arg.substr(arg.find('=') == std::string::npos ? 0 : arg.find('=') + 1);
    if (auto url = wsc::parse_redis_url(value)) {
      auto shown = url->redacted();
      if (!url->password.empty() && shown.find(":***@") == std::string::npos)
        std::abort();
      if (url->host.empty() || url->port == 0 || url->db < 0 || url->db > 15)
        std::abort();
    }
    if (auto d = wsc::parse_duration(value); d && d->count() < 0)
      std::abort();
    (void) wsc::parse_endpoint(value);
  }
  if (auto parsed = wsc::parse_options(args); parsed && !parsed->help) {
    if (wsc::validate(parsed->opts))
      std::abort(); // parse_options returned options that do not validate
  }
  return 0;
}
