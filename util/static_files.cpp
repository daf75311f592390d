#include "util/static_files.hpp"

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
  else if (path.rfind("/client/", 0) == 0 && safe(path.substr(8)))
    file = web_root_ + "/../clients/js/" + path.substr(8);
  else if (path.size() > 1 && safe(path.substr(1)))
    file = web_root_ + path;
  else
    return std::nullopt;
  std::lock_guard guard{mtx_};
  if (auto i = cache_.find(file); i != cache_.end())
    return i->second;
  std::optional<static_file> result;
  std::ifstream in{file, std::ios::binary};
  if (in) {
    std::ostringstream buf;
    buf << in.rdbuf();
    result = static_file{content_type_of(file),
                         std::make_shared<const std::string>(buf.str())};
  }
  cache_.emplace(file, result);
  return result;
}

} // namespace wsc
