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
/// path a regular file below web-root. Paths with `..` or hidden parts, and
/// targets without a leading `/`, are refused; a symlink is followed only
/// when it resolves to a file inside the same folder (canonical web-root, or
/// canonical clients/js for `/client/`). Files found are read once and
/// cached (only files that exist below those folders: the cache is bounded
/// by them).
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
