#include "net/socket_limits.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>

namespace wsc::net {

void limit_send_buffer(tcp::socket& socket, uint64_t bytes) {
  if (bytes == 0)
    return;
  beast::error_code ignored;
  socket.set_option(asio::socket_base::send_buffer_size(
                        static_cast<int>(std::min<uint64_t>(bytes, 1u << 30))),
                    ignored);
}

void drop_unsent_bytes(tcp::socket& socket, bool reads) {
  if (!socket.is_open())
    return;
  auto fd = socket.native_handle();
  int unsent = 0;
  if (::ioctl(fd, SIOCOUTQNSD, &unsent) != 0 || unsent <= 0)
    return;
  if (reads) {
    unsigned int ms = 1000;
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    return;
  }
  ::linger abort{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
}

} // namespace wsc::net
