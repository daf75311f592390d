#include "util/static_files.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace wsc {

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

} // namespace

static_files::static_files(std::string web_root)
    : web_root_(std::move(web_root)) {
  // nop
}

std::optional<static_file> static_files::find(const std::string& path) {
  std::string file;
  if (path == "/" || path == "/index.html")
    file = web_root_ + "/index.html";
  else if (path == "/dashboard")
    file = web_root_ + "/dashboard.html";
  else if (path.rfind("/client/", 0) == 0 && client_file(path.substr(8)))
    file = web_root_ + "/../clients/js/" + path.substr(8);
  else if (path.size() > 1 && safe(path.substr(1)))
    file = web_root_ + path;
  else
    return std::nullopt;
  std::lock_guard guard{mtx_};
  if (auto i = cache_.find(file); i != cache_.end())
    return i->second;
  // Misses are not cached: arbitrary paths must not grow the cache.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    return std::nullopt;
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return std::nullopt;
  std::ostringstream buf;
  buf << in.rdbuf();
  static_file result{content_type_of(file),
                     std::make_shared<const std::string>(buf.str())};
  cache_.emplace(file, result);
  return result;
}

} // namespace wsc
