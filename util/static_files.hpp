#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace wsc {

/// A static file ready to send.
struct static_file {
  std::string content_type;
  std::shared_ptr<const std::string> body;
};

/// Serves the web demo, the dashboard and the JS client from disk: `/` is
/// `<web-root>/index.html`, `/dashboard` is `<web-root>/dashboard.html`,
/// `/client/<file>.js` is `<web-root>/../clients/js/<file>.js`, any other
/// path a regular file below web-root. Paths with `..` or hidden parts are
/// refused. Files found are read once and cached.
class static_files {
public:
  explicit static_files(std::string web_root);

  std::optional<static_file> find(const std::string& path);

private:
  std::string web_root_;
  std::mutex mtx_;
  std::map<std::string, static_file> cache_;
};

} // namespace wsc
