// Socket syscall wrappers. errno is classified here, once, into SysError.
//
// Every socket is created non-blocking and close-on-exec.
#pragma once

#include "sluice/addr.h"
#include "sluice/errors.h"
#include "sluice/fd.h"

#include <cstddef>
#include <optional>
#include <string_view>
#include <sys/types.h>
#include <sys/un.h>

namespace sluice {

// A unix-domain socket address: a file path, or "@name" for the abstract
// namespace (as systemd's NOTIFY_SOCKET may be).
struct UnixAddress {
    sockaddr_un address{};
    socklen_t length = 0;
};
// nullopt when `path` is empty or too long for sun_path.
std::optional<UnixAddress> unix_address(std::string_view path) noexcept;

// A unix socket of `type` (SOCK_STREAM, SOCK_DGRAM; blocking) connected to
// `path`. Fails with SysError::Invalid for a path unix_address refuses.
Result<UniqueFd> connect_unix(std::string_view path, int type);

// A non-blocking unix stream socket listening at the file `path` with file
// mode `mode`. The path must be free (the caller removes a stale socket).
Result<UniqueFd> listen_unix(std::string_view path, mode_t mode, int backlog);

struct ListenOptions {
    bool reuse_port = true;   // one socket per worker on the same address
    int backlog = 4096;
};

// socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen. IPv6 sockets are
// IPV6_V6ONLY so "[::]:p" and "0.0.0.0:p" can be separate listeners.
Result<UniqueFd> open_tcp_listener(const SocketAddress& address, const ListenOptions& options);

// A bound UDP socket (SO_REUSEPORT when asked), for listeners and servers.
// Bound to a wildcard address, it also reports each datagram's destination
// address (IP_PKTINFO / IPV6_RECVPKTINFO), so replies can leave from it.
Result<UniqueFd> open_udp_socket(const SocketAddress& address, bool reuse_port);

// A UDP socket connect()ed to `peer` (so replies arrive only from it and an
// ICMP port-unreachable surfaces as ECONNREFUSED). `source`, when not null,
// is bound first (its port 0: the kernel picks one).
Result<UniqueFd> open_connected_udp(const SocketAddress& peer, const SocketAddress* source = nullptr);

// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; fills `peer` when given.
Result<UniqueFd> accept_connection(int listen_fd, SocketAddress* peer);

// Starts a non-blocking TCP connect. On success the socket is connecting or
// connected; wait for EV_WRITE and check connect_result(). `source`, when not
// null, is bound first without taking a port (IP_BIND_ADDRESS_NO_PORT: the
// port is picked at connect per destination, so a fixed source address does
// not cap sessions at the ephemeral port range): a pool's `source`, and tests
// connecting from many 127.x addresses.
Result<UniqueFd> start_connect(const SocketAddress& peer, const SocketAddress* source = nullptr);

// After EV_WRITE on a connecting socket: SysError::None when connected.
SysError connect_result(int fd) noexcept;

void set_nodelay(int fd) noexcept;

struct TcpKeepalive;
// SO_KEEPALIVE on, and each non-zero field of `keepalive` (TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT); zero fields keep the kernel's defaults.
void set_keepalive(int fd, const TcpKeepalive& keepalive) noexcept;
// SO_RCVBUF / SO_SNDBUF; 0 leaves one as it is. The kernel caps each at
// net.core.{r,w}mem_max, so this is a request, not a guarantee.
void set_buffer_sizes(int fd, int receive_bytes, int send_bytes) noexcept;
// SO_LINGER {on, 0}: the next close() sends RST instead of FIN.
void set_reset_on_close(int fd) noexcept;

SocketAddress local_address(int fd);
SocketAddress peer_address(int fd);

// read/write/splice with errno classified. n >= 0 on success (0 = EOF for reads).
struct IoResult {
    ssize_t bytes = 0;
    SysError error = SysError::None;
    bool ok() const noexcept { return error == SysError::None; }
    bool would_block() const noexcept { return error == SysError::WouldBlock; }
};
IoResult read_some(int fd, void* buffer, std::size_t length) noexcept;
IoResult write_some(int fd, const void* buffer, std::size_t length) noexcept;
IoResult splice_some(int from_fd, int to_fd, std::size_t length) noexcept;

// recvfrom / sendto on an unconnected UDP socket. `peer` (when not null) is
// filled with the sender on success. A datagram longer than `length` is
// truncated by the kernel, so servers pass a 64 KiB buffer.
IoResult receive_from(int fd, void* buffer, std::size_t length, SocketAddress* peer) noexcept;
IoResult send_to(int fd, const void* buffer, std::size_t length, const SocketAddress& peer) noexcept;

// shutdown(SHUT_WR): the kernel sends FIN after the data already queued, so the
// peer reads everything, then EOF. Used to propagate a half-close.
SysError shutdown_write(int fd) noexcept;

} // namespace sluice
