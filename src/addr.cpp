#include "sluice/addr.h"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>

namespace sluice {

namespace {

// FNV-1a, 64 bit: tiny and good enough to spread addresses; Maglev rehashes
// the result with its own seeds.
std::uint64_t fnv1a(const void* data, std::size_t len, std::uint64_t h = 1469598103934665603ULL) noexcept
{
    auto p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < len; ++i) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

} // namespace

std::optional<SocketAddress> SocketAddress::from_ip(std::string_view ip, std::uint16_t port)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (ip.empty() || ip.size() >= sizeof(buf))
        return std::nullopt;
    std::memcpy(buf, ip.data(), ip.size());
    buf[ip.size()] = '\0';

    SocketAddress addr;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr.storage_);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr.storage_);
    if (::inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        addr.length_ = sizeof(sockaddr_in);
        return addr;
    }
    std::memset(&addr.storage_, 0, sizeof(addr.storage_));
    if (::inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        addr.length_ = sizeof(sockaddr_in6);
        return addr;
    }
    return std::nullopt;
}

std::optional<SocketAddress> SocketAddress::parse(std::string_view text)
{
    std::string_view host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return std::nullopt;
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
        if (host.find(':') == std::string_view::npos)
            return std::nullopt;  // brackets are for IPv6 only
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return std::nullopt;
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return std::nullopt;  // bare IPv6 needs brackets: "[::1]:80"
    }
    if (port_text.empty() || port_text.size() > 5)
        return std::nullopt;
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
        return std::nullopt;

    if (host == "*")
        host = "0.0.0.0";
    else if (host == "localhost")
        host = "127.0.0.1";
    return from_ip(host, static_cast<std::uint16_t>(port));
}

SocketAddress SocketAddress::from_sockaddr(const sockaddr* sa, socklen_t len)
{
    SocketAddress addr;
    if (len > sizeof(addr.storage_))
        len = sizeof(addr.storage_);
    std::memcpy(&addr.storage_, sa, len);
    addr.length_ = len;
    return addr;
}

std::uint16_t SocketAddress::port() const noexcept
{
    if (family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    return 0;
}

void SocketAddress::set_port(std::uint16_t port) noexcept
{
    if (family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
    else if (family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

std::string SocketAddress::ip_string() const
{
    char buf[INET6_ADDRSTRLEN] = "?";
    if (family() == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof(buf));
    else if (family() == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof(buf));
    return buf;
}

std::string SocketAddress::to_string() const
{
    // Built by appending: GCC 12 at -O3 warns (-Wrestrict, a false positive)
    // on `"[" + std::string`.
    std::string text;
    if (is_ipv6())
        text.append("[").append(ip_string()).append("]");
    else
        text.append(ip_string());
    return text.append(":").append(std::to_string(port()));
}

std::uint64_t SocketAddress::ip_hash() const noexcept
{
    if (family() == AF_INET) {
        auto& a = reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr;
        return fnv1a(&a, sizeof(a));
    }
    if (family() == AF_INET6) {
        auto& a = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
        return fnv1a(&a, sizeof(a));
    }
    return 0;
}

std::uint64_t SocketAddress::full_hash() const noexcept
{
    std::uint16_t p = port();
    return fnv1a(&p, sizeof(p), ip_hash());
}

bool SocketAddress::is_wildcard() const noexcept
{
    if (family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (family() == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
    return false;
}

bool SocketAddress::same_ip(const SocketAddress& other) const noexcept
{
    if (family() != other.family())
        return false;
    if (family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr
            == reinterpret_cast<const sockaddr_in*>(&other.storage_)->sin_addr.s_addr;
    if (family() == AF_INET6)
        return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr,
                           &reinterpret_cast<const sockaddr_in6*>(&other.storage_)->sin6_addr,
                           sizeof(in6_addr)) == 0;
    return false;
}

bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept
{
    return a.same_ip(b) && a.port() == b.port();
}

} // namespace sluice
