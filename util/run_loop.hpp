#pragma once

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace wsc {

/// Runs `ioc` until it runs out of work or is stopped, on the calling
/// thread (`name` says which in the log). An exception out of a handler
/// would end the thread and with it the process (std::terminate), every
/// client of the node with it: it is logged and the loop runs on (Asio
/// allows run() again after a throw). What the handler was doing is lost;
/// its object (a session) goes with its last reference.
void run_loop(boost::asio::io_context& ioc, const char* name);

} // namespace wsc
