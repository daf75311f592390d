#include "util/static_files.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace wsc {

namespace fs = std::filesystem;

namespace {

std::string content_type_of(const std::string& path) {
  auto dot = path.rfind('.');
  auto ext = dot == std::string::npos ? std::string{} : path.substr(dot + 1);
  if (ext == "html")
    return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs")
    return "text/javascript; charset=utf-8";
  if (ext == "css")
    return "text/css; charset=utf-8";
  if (ext == "json")
    return "application/json";
  if (ext == "svg")
    return "image/svg+xml";
  if (ext == "png")
    return "image/png";
  if (ext == "ts")
    return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

bool safe(const std::string& rel) {
  if (rel.empty() || rel.find("..") != std::string::npos ||
      rel.find('\\') != std::string::npos ||
      rel.find('\0') != std::string::npos)
    return false;
  return rel.find("/.") == std::string::npos && rel[0] != '.';
}

/// Only the client library itself is served from clients/js (not its tests,
/// package files or node_modules).
bool client_file(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) ==
               0;
  };
  return safe(name) && name.find('/') == std::string::npos &&
         (ends_with(".js") || ends_with(".d.ts"));
}

/// The canonical form of an existing folder; empty when it does not exist
/// (then nothing is served from it).
fs::path canonical_dir(const fs::path& dir) {
  std::error_code ec;
  auto result = fs::canonical(dir, ec);
  if (ec || !fs::is_directory(result, ec))
    return {};
  return result;
}

/// Whether `path` (canonical) lies below `root` (canonical, not empty).
bool inside(const fs::path& path, const fs::path& root) {
  if (root.empty())
    return false;
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p)
    if (p == path.end() || *p != *r)
      return false;
  return p != path.end();
}

} // namespace

static_files::static_files(std::string web_root)
    : web_root_(std::move(web_root)) {
  // nop
}

std::optional<static_file> static_files::find(const std::string& path) {
  // Every target served starts with '/': anything else would be appended to
  // the folder's name (`-secret/x` -> `<web-root>-secret/x`).
  if (path.empty() || path[0] != '/')
    return std::nullopt;
  // The folders are resolved per request (a few system calls), so that a
  // web-root that is a symlink switched by a deployment takes effect.
  fs::path root;
  std::string rel;
  if (path == "/" || path == "/index.html") {
    root = canonical_dir(web_root_);
    rel = "index.html";
  } else if (path == "/dashboard") {
    root = canonical_dir(web_root_);
    rel = "dashboard.html";
  } else if (path.rfind("/client/", 0) == 0 && client_file(path.substr(8))) {
    root = canonical_dir(fs::path{web_root_} / ".." / "clients" / "js");
    rel = path.substr(8);
  } else if (path.size() > 1 && safe(path.substr(1))) {
    root = canonical_dir(web_root_);
    rel = path.substr(1);
  } else {
    return std::nullopt;
  }
  if (root.empty() || rel.empty() || rel[0] == '/')
    return std::nullopt;
  auto file = root / rel;
  // Symlinks are followed, but only to files inside the same folder: the
  // resolved path must still lie below the canonical root, and not in a
  // hidden part of it.
  std::error_code ec;
  auto resolved = fs::canonical(file, ec);
  if (ec || !inside(resolved, root) ||
      !safe(resolved.lexically_relative(root).generic_string()))
    return std::nullopt;
  auto key = resolved.string();
  std::lock_guard guard{mtx_};
  if (auto i = cache_.find(key); i != cache_.end())
    return i->second;
  // Misses are not cached: arbitrary paths must not grow the cache, which
  // holds only regular files found below the roots.
  if (!fs::is_regular_file(resolved, ec))
    return std::nullopt;
  std::ifstream in{resolved, std::ios::binary};
  if (!in)
    return std::nullopt;
  std::ostringstream buf;
  buf << in.rdbuf();
  static_file result{content_type_of(rel),
                     std::make_shared<const std::string>(buf.str())};
  cache_.emplace(std::move(key), result);
  return result;
}

} // namespace wsc
