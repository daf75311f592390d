#include "net/socket_limits.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

namespace wsc::net {

void limit_send_buffer(tcp::socket& socket, uint64_t bytes) {
  if (bytes == 0)
    return;
  beast::error_code ignored;
  socket.set_option(
      asio::socket_base::send_buffer_size(static_cast<int>(bytes)), ignored);
}

// Raw setsockopt, not asio's linger option: asio remembers that one and
// turns lingering off again when the socket object is destroyed, which
// would turn the reset back into a graceful close.

bool holds_unsent_bytes(tcp::socket& socket) {
  int unsent = 0;
  return socket.is_open() &&
         ::ioctl(socket.native_handle(), SIOCOUTQNSD, &unsent) == 0 &&
         unsent > 0;
}

void drop_unsent_bytes(tcp::socket& socket, std::chrono::milliseconds grace) {
  if (!holds_unsent_bytes(socket))
    return;
  if (grace.count() > 0) {
    reset_on_close(socket, false);
    auto ms = static_cast<unsigned int>(grace.count());
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms,
                 sizeof(ms));
    return;
  }
  reset_on_close(socket, true);
}

void reset_on_close(tcp::socket& socket, bool reset) {
  if (!socket.is_open())
    return;
  ::linger option{reset ? 1 : 0, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_LINGER, &option,
               sizeof(option));
}

} // namespace wsc::net
