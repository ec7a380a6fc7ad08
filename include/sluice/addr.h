// IPv4/IPv6 socket addresses: parsing "host:port" / "[v6]:port", printing, hashing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <netinet/in.h>
#include <sys/socket.h>

namespace sluice {

class SocketAddress {
public:
    SocketAddress() = default;

    // Parses "1.2.3.4:80", "[::1]:80", "*:80" (IPv4 any), "[::]:80" or
    // "localhost:80" (127.0.0.1). Ports 0..65535; port 0 means "any free port"
    // for a listener. Returns nullopt for anything else.
    static std::optional<SocketAddress> parse(std::string_view text);

    // Copies a kernel-provided address (from accept/getsockname/recvfrom).
    static SocketAddress from_sockaddr(const sockaddr* sa, socklen_t len);

    // Builds an address from a parsed IP literal and a port.
    static std::optional<SocketAddress> from_ip(std::string_view ip, std::uint16_t port);

    const sockaddr* sockaddr_ptr() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
    sockaddr* sockaddr_ptr() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
    socklen_t length() const noexcept { return length_; }
    int family() const noexcept { return storage_.ss_family; }
    bool is_ipv6() const noexcept { return family() == AF_INET6; }
    // 0.0.0.0 or [::]: bound to every local address.
    bool is_wildcard() const noexcept;
    bool empty() const noexcept { return length_ == 0; }

    std::uint16_t port() const noexcept;
    void set_port(std::uint16_t port) noexcept;

    // "1.2.3.4:80" or "[::1]:80".
    std::string to_string() const;
    // The IP alone, without port or brackets.
    std::string ip_string() const;

    // Hash of the IP only (no port): the key ip_hash uses so a client keeps its
    // backend across connections from different source ports.
    std::uint64_t ip_hash() const noexcept;
    // Hash of IP and port: the key of a UDP flow.
    std::uint64_t full_hash() const noexcept;

    bool same_ip(const SocketAddress& other) const noexcept;
    friend bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept;

private:
    sockaddr_storage storage_{};
    socklen_t length_ = 0;
};

} // namespace sluice
