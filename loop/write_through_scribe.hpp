#pragma once

// -- A BASP connection that writes when flushed -------------------------------
//
// CAF 0.17.6's stream (libcaf_io/src/io/network/stream.cpp) never writes
// in `flush()`: it registers the socket for EPOLLOUT, the multiplexer's
// next round finds it writable and sends, and then unregisters it. Each
// flush of a BASP connection so costs two `epoll_ctl`s and a round of the
// multiplexer's epoll (and on a loop, one more wake-up of the loop through
// that epoll's descriptor) before the bytes leave. This scribe sends at
// once, on the thread that flushes (the multiplexer's: BASP's broker runs
// there), whenever the stream has no write in progress; only what the
// socket does not take goes the stream's way, so bytes never overtake.
// An error leaves the bytes to the stream, which reports it from the
// multiplexer's loop as before (not from inside the broker's handler).

#include <caf/io/network/scribe_impl.hpp>

namespace wsc {

class write_through_scribe : public caf::io::network::scribe_impl {
public:
  write_through_scribe(caf::io::network::default_multiplexer& mpx,
                       caf::io::network::native_socket fd);

  void flush() override;

  /// The stream reports every write (so that this scribe knows when it has
  /// none in progress); the broker hears of them only if it asked, and
  /// then every write goes the stream's way (BASP never asks).
  void ack_writes(bool enable) override;

  void data_transferred(caf::execution_unit* ctx, size_t written,
                        size_t remaining) override;

private:
  /// Whether the stream holds bytes it has not sent yet.
  bool stream_writing_ = false;
  /// Whether the broker asked for data_transferred messages.
  bool broker_acks_ = false;
};

} // namespace wsc
