#include "sluice/socket.h"

#include "sluice/config.h"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice {

namespace {

Result<UniqueFd> new_socket(int family, int type)
{
    int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno_result<UniqueFd>();
    return UniqueFd(fd);
}

void set_int_option(int fd, int level, int name, int value) noexcept
{
    ::setsockopt(fd, level, name, &value, sizeof(value));
}

// Binds with the options every bound socket of ours wants.
SysError bind_reusable(int fd, const SocketAddress& address, bool reuse_port)
{
    set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (reuse_port)
        set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (address.is_ipv6())
        set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (::bind(fd, address.sockaddr_ptr(), address.length()) != 0)
        return classify_errno(errno);
    return SysError::None;
}

IoResult io_result(ssize_t n) noexcept
{
    if (n >= 0)
        return IoResult{n, SysError::None};
    return IoResult{-1, classify_errno(errno)};
}

} // namespace

std::optional<UnixAddress> unix_address(std::string_view path) noexcept
{
    UnixAddress out;
    if (path.empty() || path.size() >= sizeof(out.address.sun_path))
        return std::nullopt;
    out.address.sun_family = AF_UNIX;
    std::memcpy(out.address.sun_path, path.data(), path.size());
    if (path[0] == '@')
        out.address.sun_path[0] = '\0';  // abstract: the name is not NUL-terminated
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
    return out;
}

Result<UniqueFd> connect_unix(std::string_view path, int type)
{
    std::optional<UnixAddress> address = unix_address(path);
    if (!address)
        return Result<UniqueFd>(SysError::Invalid, EINVAL);
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!fd)
        return errno_result<UniqueFd>();
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address->address), address->length) != 0)
        return errno_result<UniqueFd>();
    return fd;
}

Result<UniqueFd> listen_unix(std::string_view path, mode_t mode, int backlog)
{
    std::optional<UnixAddress> address = unix_address(path);
    if (!address || path[0] == '@')
        return Result<UniqueFd>(SysError::Invalid, EINVAL);
    auto sock = new_socket(AF_UNIX, SOCK_STREAM);
    if (!sock)
        return sock;
    int fd = sock.value().get();
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address->address), address->length) != 0)
        return errno_result<UniqueFd>();
    std::string file(path);
    if (::chmod(file.c_str(), mode) != 0 || ::listen(fd, backlog) != 0)
        return errno_result<UniqueFd>();
    return sock;
}

Result<UniqueFd> open_tcp_listener(const SocketAddress& address, const ListenOptions& options)
{
    auto sock = new_socket(address.family(), SOCK_STREAM);
    if (!sock)
        return sock;
    int fd = sock.value().get();
    if (SysError err = bind_reusable(fd, address, options.reuse_port); err != SysError::None)
        return Result<UniqueFd>(err, errno);
    if (::listen(fd, options.backlog) != 0)
        return errno_result<UniqueFd>();
    return sock;
}

Result<UniqueFd> open_udp_socket(const SocketAddress& address, bool reuse_port)
{
    auto sock = new_socket(address.family(), SOCK_DGRAM);
    if (!sock)
        return sock;
    if (SysError err = bind_reusable(sock.value().get(), address, reuse_port); err != SysError::None)
        return Result<UniqueFd>(err, errno);
    if (address.is_wildcard()) {
        if (address.is_ipv6())
            set_int_option(sock.value().get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
        else
            set_int_option(sock.value().get(), IPPROTO_IP, IP_PKTINFO, 1);
    }
    return sock;
}

Result<UniqueFd> open_connected_udp(const SocketAddress& peer, const SocketAddress* source)
{
    auto sock = new_socket(peer.family(), SOCK_DGRAM);
    if (!sock)
        return sock;
    if (source && ::bind(sock.value().get(), source->sockaddr_ptr(), source->length()) != 0)
        return errno_result<UniqueFd>();
    if (::connect(sock.value().get(), peer.sockaddr_ptr(), peer.length()) != 0)
        return errno_result<UniqueFd>();
    return sock;
}

Result<UniqueFd> accept_connection(int listen_fd, SocketAddress* peer)
{
    sockaddr_storage storage{};
    socklen_t len = sizeof(storage);
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&storage), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return errno_result<UniqueFd>();
    if (peer)
        *peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), len);
    return UniqueFd(fd);
}

Result<UniqueFd> start_connect(const SocketAddress& peer, const SocketAddress* source)
{
    auto sock = new_socket(peer.family(), SOCK_STREAM);
    if (!sock)
        return sock;
    int fd = sock.value().get();
    if (source) {
        // Lets many test clients share source ports across 127.x addresses.
        set_int_option(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
        if (::bind(fd, source->sockaddr_ptr(), source->length()) != 0)
            return errno_result<UniqueFd>();
    }
    if (::connect(fd, peer.sockaddr_ptr(), peer.length()) != 0 && errno != EINPROGRESS)
        return errno_result<UniqueFd>();
    return sock;
}

SysError connect_result(int fd) noexcept
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return classify_errno(errno);
    return classify_errno(err);
}

void set_nodelay(int fd) noexcept { set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1); }

void set_keepalive(int fd, const TcpKeepalive& keepalive) noexcept
{
    set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
    if (keepalive.idle.count() > 0)
        set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(keepalive.idle.count() / 1000));
    if (keepalive.interval.count() > 0)
        set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(keepalive.interval.count() / 1000));
    if (keepalive.count > 0)
        set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, keepalive.count);
}

void set_buffer_sizes(int fd, int receive_bytes, int send_bytes) noexcept
{
    if (receive_bytes > 0)
        set_int_option(fd, SOL_SOCKET, SO_RCVBUF, receive_bytes);
    if (send_bytes > 0)
        set_int_option(fd, SOL_SOCKET, SO_SNDBUF, send_bytes);
}

void set_reset_on_close(int fd) noexcept
{
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

SocketAddress local_address(int fd)
{
    sockaddr_storage storage{};
    socklen_t len = sizeof(storage);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0)
        return SocketAddress{};
    return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), len);
}

SocketAddress peer_address(int fd)
{
    sockaddr_storage storage{};
    socklen_t len = sizeof(storage);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0)
        return SocketAddress{};
    return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), len);
}

IoResult read_some(int fd, void* buffer, std::size_t length) noexcept
{
    return io_result(::read(fd, buffer, length));
}

IoResult write_some(int fd, const void* buffer, std::size_t length) noexcept
{
    return io_result(::send(fd, buffer, length, MSG_NOSIGNAL | MSG_DONTWAIT));
}

IoResult splice_some(int from_fd, int to_fd, std::size_t length) noexcept
{
    return io_result(::splice(from_fd, nullptr, to_fd, nullptr, length, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
}

IoResult receive_from(int fd, void* buffer, std::size_t length, SocketAddress* peer) noexcept
{
    sockaddr_storage storage;
    socklen_t len = sizeof(storage);
    ssize_t n = ::recvfrom(fd, buffer, length, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&storage), &len);
    if (n >= 0 && peer)
        *peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), len);
    return io_result(n);
}

IoResult send_to(int fd, const void* buffer, std::size_t length, const SocketAddress& peer) noexcept
{
    return io_result(::sendto(fd, buffer, length, MSG_NOSIGNAL | MSG_DONTWAIT, peer.sockaddr_ptr(), peer.length()));
}

SysError shutdown_write(int fd) noexcept
{
    if (::shutdown(fd, SHUT_WR) != 0)
        return classify_errno(errno);
    return SysError::None;
}

} // namespace sluice
