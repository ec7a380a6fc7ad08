// PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a
// proxy puts in front of a TCP stream to say which client it carries.
//
// parse_proxy_header reads a header from the first bytes of a connection and
// detects the version: v1 is one text line ("PROXY TCP4 1.2.3.4 5.6.7.8 1000
// 80\r\n", at most 107 bytes), v2 a binary block (a 12-byte signature, then
// version/command, family, a 16-bit length and the addresses; TLVs after the
// addresses are skipped). It is incremental in the sense a socket needs: give
// it every byte received so far and it says NeedMore (nothing wrong yet, the
// header is not complete), Done (the header and its length: the bytes after it
// belong to the client's stream) or Error (why, in words). It never reads past
// the header, and judges a prefix as soon as it cannot start a valid header,
// so a client sending garbage is refused at its first bytes.
//
// The encoders write the header sluice sends to a backend (send_proxy) for a
// TCP connection from `source` to `destination`.
//
// Pure functions: no I/O, no allocation, any thread.
#pragma once

#include "sluice/addr.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice {

// send_proxy's values.
enum class ProxyVersion : std::uint8_t { Off, V1, V2 };

std::string_view to_string(ProxyVersion version) noexcept;

struct ProxyHeader {
    std::size_t length = 0;    // bytes the header takes at the start of the stream
    int version = 0;           // 1 or 2
    // LOCAL (v2: a health check from the proxy itself), UNKNOWN (v1) or an
    // address family sluice does not relay (v2 UNSPEC, UNIX, UDP): the header
    // announces no client, and the connection's real peer stays the client
    // (as HAProxy does). `source`/`destination` are empty then.
    bool local = false;
    SocketAddress source;       // the client as announced
    SocketAddress destination;  // the address the client connected to
};

struct ProxyParse {
    enum class Status : std::uint8_t { NeedMore, Done, Error };
    Status status = Status::NeedMore;
    ProxyHeader header;       // Done only
    std::string_view error;   // Error only: a static description
};

// The longest header accepted: v1's own limit is 107 bytes; v2 headers carry
// TLVs (SSL details, a unique id) of a few hundred bytes in practice, so 4 KiB
// leaves room while bounding what a client can make sluice buffer.
inline constexpr std::size_t kProxyV1MaxLength = 107;
inline constexpr std::size_t kProxyMaxHeaderLength = 4096;
// The longest header the encoders write (v1 TCP6: 104 bytes).
inline constexpr std::size_t kProxyMaxEncodedLength = 108;

// Parses the header at the start of `bytes` (everything received so far).
ProxyParse parse_proxy_header(std::string_view bytes) noexcept;

// Writes the header for a TCP connection from `source` to `destination` into
// `out` (at least kProxyMaxEncodedLength bytes) and returns its length. Two
// IPv4 addresses make TCP4, two IPv6 TCP6; with one of each, the IPv4 one is
// written as IPv4-mapped IPv6 (TCP6). An address that is neither (empty)
// makes "PROXY UNKNOWN\r\n" (v1) or a PROXY command with family UNSPEC (v2).
std::size_t encode_proxy_v1(const SocketAddress& source, const SocketAddress& destination, char* out) noexcept;
std::size_t encode_proxy_v2(const SocketAddress& source, const SocketAddress& destination, char* out) noexcept;
// The one the pool asks for; 0 for Off.
std::size_t encode_proxy_header(ProxyVersion version, const SocketAddress& source, const SocketAddress& destination,
                                char* out) noexcept;

} // namespace sluice
