#include "util/run_loop.hpp"

#include "util/log.hpp"

#include <boost/asio/io_context.hpp>

#include <exception>

namespace wsc {

void run_loop(boost::asio::io_context& ioc, const char* name) {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      log::error("{}: a handler threw, the loop runs on: {}", name, e.what());
    } catch (...) {
      log::error("{}: a handler threw, the loop runs on", name);
    }
  }
}

} // namespace wsc
