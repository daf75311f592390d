#pragma once

// -- RFC 6455 framing on the server side -------------------------------------
//
// Pure functions and a byte-driven reader: no sockets, no actors, no
// allocation while a connection is idle. The WebSocket session feeds it the
// bytes it reads when the socket is readable and writes what `encode_header`
// and `close_payload` build. Where RFC 6455 leaves a choice, the reader does
// what Beast does (docs/security.md, "RFC 6455 conformance"): the same close
// code for every case of tests/integration/conformance.py.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsc::ws {

enum class opcode : uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

/// Close codes the reader fails a connection with.
namespace close_code {
constexpr uint16_t normal = 1000;
constexpr uint16_t protocol_error = 1002;
/// A close frame without a code (never sent on the wire).
constexpr uint16_t no_status = 1005;
constexpr uint16_t bad_payload = 1007;
constexpr uint16_t policy = 1008;
constexpr uint16_t too_big = 1009;
} // namespace close_code

/// Whether a peer may send `code` in a close frame (as Beast decides:
/// reserved and unassigned codes below 3000 are refused, 1014 included).
bool valid_close_code(uint16_t code);

/// Checks UTF-8 that arrives in pieces: a sequence may be split anywhere
/// between two `feed` calls. Refuses overlong forms, surrogates and code
/// points above U+10FFFF as soon as the offending byte arrives.
class utf8_validator {
public:
  /// False once the bytes seen so far cannot start valid UTF-8.
  bool feed(const unsigned char* data, size_t size);

  /// Whether the bytes seen so far end at a character boundary.
  bool complete() const { return need_ == 0; }

  void reset() { need_ = 0; }

private:
  /// Continuation bytes still expected, and the range of the next one.
  uint8_t need_ = 0;
  uint8_t lo_ = 0x80;
  uint8_t hi_ = 0xBF;
};

/// Whether `text` is well-formed UTF-8 as a whole.
bool valid_utf8(std::string_view text);

/// Writes the header of an unfragmented, unmasked frame (server to client)
/// carrying `payload_size` bytes into `out`; returns its length (2, 4 or 10).
size_t encode_header(opcode op, uint64_t payload_size, uint8_t (&out)[10]);

/// The payload of a close frame: the code, then the reason cut to what fits
/// a control frame (125 bytes in all) at a character boundary.
std::string close_payload(uint16_t code, std::string_view reason);

/// What the reader reports while it consumes bytes.
class frame_events {
public:
  virtual ~frame_events();

  /// A whole text or binary message. `payload` may be moved from. Returns
  /// false to stop reading after this message (the rest stays unread).
  virtual bool on_message(bool binary, std::string& payload) = 0;

  /// A ping, a pong or a continuation frame begins (`size`: its payload
  /// bytes): the frames that start no message, which a limit on messages
  /// does not see. Returns false to fail the connection with 1008 (a flood).
  virtual bool admit_frame(opcode op, uint64_t size);

  /// A ping: answer with a pong carrying the same payload.
  virtual void on_ping(std::string_view payload) = 0;

  /// A close frame (`code` is close_code::no_status if it had none). The
  /// reader reads nothing after it.
  virtual void on_close(uint16_t code, std::string_view reason) = 0;
};

/// Reads the frames a client sends: checks every header rule of RFC 6455
/// for the server side, unmasks, joins fragments, checks the UTF-8 of text
/// messages as it arrives and bounds a message's size. Interleaved control
/// frames are reported as they complete.
class frame_reader {
public:
  /// `max_message_bytes` bounds a message's payload (0: no bound). Binary
  /// messages start with `binary_prefix` (not counted against the bound).
  frame_reader(uint64_t max_message_bytes, std::string_view binary_prefix);

  struct result {
    /// Bytes of the input taken (all, unless on_message asked to stop, a
    /// close frame ended the stream or the connection failed).
    size_t consumed = 0;
    /// Non-zero: fail the connection with this close code.
    uint16_t fail_code = 0;
    const char* fail_reason = "";
  };

  /// Consumes `size` bytes read from the socket.
  result feed(const char* data, size_t size, frame_events& events);

  /// Whether a close frame ended the stream (nothing is read after it).
  bool closed() const { return closed_; }

  /// Messages read to their end so far, and control frames read between
  /// messages (wraps around): a connection is active when this moves, not
  /// when bytes of a frame that never ends trickle in, nor when pings or
  /// fragments come while a message that holds memory never ends.
  uint32_t completed() const { return completed_; }

  /// Payload bytes of the current frame not read yet (0 between frames):
  /// what a read may take without going past the frame.
  uint64_t frame_remaining() const { return in_payload_ ? remaining_ : 0; }

private:
  result fail(result r, uint16_t code, const char* reason);
  /// Checks a complete header; on success sets up the frame's payload.
  uint16_t start_frame(const char*& reason);
  /// Takes payload bytes of a data frame.
  uint16_t take_data(const char* data, size_t n, const char*& reason);
  /// A control frame's payload is complete.
  void finish_control(frame_events& events, result& r);
  void unmask(char* out, const char* in, size_t n);

  uint64_t max_message_bytes_;
  std::string_view binary_prefix_;
  /// The message being read (with its prefix) and a control frame's payload.
  std::string message_;
  std::string control_;
  uint64_t message_size_ = 0;
  uint64_t remaining_ = 0;
  utf8_validator utf8_;
  uint8_t header_[14];
  uint8_t header_size_ = 0;
  uint8_t mask_[4];
  uint8_t mask_at_ = 0;
  uint32_t completed_ = 0;
  opcode frame_op_ = opcode::continuation;
  bool fin_ = false;
  bool in_message_ = false;
  bool binary_ = false;
  /// A header was read and its payload is being read.
  bool in_payload_ = false;
  bool closed_ = false;
};

} // namespace wsc::ws
