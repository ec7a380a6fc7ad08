#include "sluice/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sluice {

namespace {

using Status = ProxyParse::Status;

constexpr std::string_view kV1Prefix = "PROXY ";
// proxy-protocol.txt 2.2: "\r\n\r\n\0\r\nQUIT\n", chosen never to start a
// valid request of any common protocol.
constexpr std::string_view kV2Signature{"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12};
constexpr std::size_t kV2FixedLength = 16;  // signature, version/command, family, length
constexpr std::size_t kV2Inet4Length = 12;  // two IPv4 addresses, two ports
constexpr std::size_t kV2Inet6Length = 36;  // two IPv6 addresses, two ports

ProxyParse need_more() noexcept { return {}; }

ProxyParse error(std::string_view reason) noexcept
{
    ProxyParse parse;
    parse.status = Status::Error;
    parse.error = reason;
    return parse;
}

ProxyParse done(ProxyHeader header) noexcept
{
    ProxyParse parse;
    parse.status = Status::Done;
    parse.header = header;
    return parse;
}

// True when `bytes` is a prefix of `whole` or starts with it.
bool matches_so_far(std::string_view bytes, std::string_view whole) noexcept
{
    const std::size_t n = std::min(bytes.size(), whole.size());
    return bytes.substr(0, n) == whole.substr(0, n);
}

// A v1 port: 1 to 5 digits, no leading zero, at most 65535.
std::optional<std::uint16_t> v1_port(std::string_view text) noexcept
{
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value > 65535)
        return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

// Splits off the text up to the next space.
std::string_view next_field(std::string_view& rest) noexcept
{
    const std::size_t space = rest.find(' ');
    std::string_view field = rest.substr(0, space);
    rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
    return field;
}

// `line`: what follows "PROXY " up to the CRLF.
ProxyParse parse_v1_line(std::string_view line, std::size_t length) noexcept
{
    ProxyHeader header;
    header.version = 1;
    header.length = length;
    std::string_view rest = line;
    const std::string_view protocol = next_field(rest);
    if (protocol == "UNKNOWN") {
        // The sender could not tell (or would not); anything may follow.
        header.local = true;
        return done(header);
    }
    int family = 0;
    if (protocol == "TCP4")
        family = AF_INET;
    else if (protocol == "TCP6")
        family = AF_INET6;
    else
        return error("v1 protocol is not TCP4, TCP6 or UNKNOWN");
    const std::string_view source_ip = next_field(rest);
    const std::string_view destination_ip = next_field(rest);
    const std::string_view source_port = next_field(rest);
    const std::string_view destination_port = rest;
    if (destination_port.empty() || destination_port.find(' ') != std::string_view::npos)
        return error("v1 header does not have exactly four fields after the protocol, single-space separated");
    const std::optional<std::uint16_t> sport = v1_port(source_port);
    const std::optional<std::uint16_t> dport = v1_port(destination_port);
    if (!sport || !dport)
        return error("v1 port is not a number from 0 to 65535");
    std::optional<SocketAddress> source = SocketAddress::from_ip(source_ip, *sport);
    std::optional<SocketAddress> destination = SocketAddress::from_ip(destination_ip, *dport);
    if (!source || !destination || source->family() != family || destination->family() != family)
        return error(family == AF_INET ? "v1 TCP4 address is not an IPv4 address" : "v1 TCP6 address is not an IPv6 address");
    header.source = *source;
    header.destination = *destination;
    return done(header);
}

ProxyParse parse_v1(std::string_view bytes) noexcept
{
    if (!matches_so_far(bytes, kV1Prefix))
        return error("not a PROXY protocol header (neither \"PROXY \" nor the v2 signature)");
    const std::size_t limit = std::min(bytes.size(), kProxyV1MaxLength);
    for (std::size_t i = 0; i < limit; ++i) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        if (c == '\r') {
            if (i + 2 > kProxyV1MaxLength)
                break;  // its LF would be byte 108
            if (i + 1 == bytes.size())
                return need_more();
            if (bytes[i + 1] != '\n')
                return error("v1 header has a CR not followed by LF");
            if (i < kV1Prefix.size())
                return error("v1 header ends before its protocol");
            return parse_v1_line(bytes.substr(kV1Prefix.size(), i - kV1Prefix.size()), i + 2);
        }
        if (c < 0x20 || c > 0x7e)
            return error("v1 header has a byte that is not printable ASCII before its CRLF");
    }
    if (bytes.size() >= kProxyV1MaxLength - 1)
        return error("v1 header has no CRLF within 107 bytes");
    return need_more();
}

std::uint16_t read_be16(const char* p) noexcept
{
    return static_cast<std::uint16_t>((static_cast<unsigned char>(p[0]) << 8) | static_cast<unsigned char>(p[1]));
}

ProxyParse parse_v2(std::string_view bytes) noexcept
{
    if (!matches_so_far(bytes, kV2Signature))
        return error("not a PROXY protocol header (neither \"PROXY \" nor the v2 signature)");
    if (bytes.size() < kV2FixedLength)
        return need_more();
    const auto version_command = static_cast<unsigned char>(bytes[12]);
    const auto family_transport = static_cast<unsigned char>(bytes[13]);
    if ((version_command >> 4) != 2)
        return error("v2 version nibble is not 2");
    const unsigned command = version_command & 0x0f;
    if (command > 1)
        return error("v2 command is neither LOCAL (0) nor PROXY (1)");
    const unsigned family = family_transport >> 4;       // 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX
    const unsigned transport = family_transport & 0x0f;  // 0 UNSPEC, 1 STREAM, 2 DGRAM
    if (family > 3 || transport > 2)
        return error("v2 address family or transport is not one the protocol defines");
    const std::size_t address_length = read_be16(bytes.data() + 14);
    const std::size_t length = kV2FixedLength + address_length;
    if (length > kProxyMaxHeaderLength)
        return error("v2 header is longer than the 4096-byte limit");
    const bool tcp4 = command == 1 && family_transport == 0x11;
    const bool tcp6 = command == 1 && family_transport == 0x21;
    if ((tcp4 && address_length < kV2Inet4Length) || (tcp6 && address_length < kV2Inet6Length))
        return error("v2 header is too short for the addresses of its family");
    if (bytes.size() < length)
        return need_more();

    ProxyHeader header;
    header.version = 2;
    header.length = length;
    const char* addresses = bytes.data() + kV2FixedLength;
    if (tcp4) {
        sockaddr_in source{};
        sockaddr_in destination{};
        source.sin_family = destination.sin_family = AF_INET;
        std::memcpy(&source.sin_addr, addresses, 4);
        std::memcpy(&destination.sin_addr, addresses + 4, 4);
        std::memcpy(&source.sin_port, addresses + 8, 2);  // both in network order
        std::memcpy(&destination.sin_port, addresses + 10, 2);
        header.source = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&source), sizeof source);
        header.destination =
            SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&destination), sizeof destination);
    } else if (tcp6) {
        sockaddr_in6 source{};
        sockaddr_in6 destination{};
        source.sin6_family = destination.sin6_family = AF_INET6;
        std::memcpy(&source.sin6_addr, addresses, 16);
        std::memcpy(&destination.sin6_addr, addresses + 16, 16);
        std::memcpy(&source.sin6_port, addresses + 32, 2);
        std::memcpy(&destination.sin6_port, addresses + 34, 2);
        header.source = SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&source), sizeof source);
        header.destination =
            SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&destination), sizeof destination);
    } else {
        // LOCAL, or addresses sluice does not relay (UNSPEC, UNIX, UDP): the
        // spec lets the receiver keep the connection's own addresses.
        header.local = true;
    }
    return done(header);
}

// The address as IPv6: itself, or an IPv4 one mapped (::ffff:a.b.c.d).
sockaddr_in6 as_ipv6(const SocketAddress& address) noexcept
{
    sockaddr_in6 v6{};
    if (address.family() == AF_INET6) {
        std::memcpy(&v6, address.sockaddr_ptr(), sizeof v6);
        return v6;
    }
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address.sockaddr_ptr());
    v6.sin6_family = AF_INET6;
    v6.sin6_port = v4->sin_port;
    v6.sin6_addr.s6_addr[10] = 0xff;
    v6.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&v6.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
    return v6;
}

bool is_inet(const SocketAddress& address) noexcept
{
    return address.family() == AF_INET || address.family() == AF_INET6;
}

char* append(char* out, std::string_view text) noexcept
{
    std::memcpy(out, text.data(), text.size());
    return out + text.size();
}

char* append_port(char* out, std::uint16_t port) noexcept
{
    return std::to_chars(out, out + 5, port).ptr;
}

} // namespace

std::string_view to_string(ProxyVersion version) noexcept
{
    switch (version) {
    case ProxyVersion::Off: return "off";
    case ProxyVersion::V1: return "v1";
    case ProxyVersion::V2: return "v2";
    }
    return "off";
}

ProxyParse parse_proxy_header(std::string_view bytes) noexcept
{
    if (bytes.empty())
        return need_more();
    // The first byte tells the versions apart: 'P' or CR.
    return bytes[0] == kV2Signature[0] ? parse_v2(bytes) : parse_v1(bytes);
}

std::size_t encode_proxy_v1(const SocketAddress& source, const SocketAddress& destination, char* out) noexcept
{
    char* p = out;
    if (!is_inet(source) || !is_inet(destination))
        return static_cast<std::size_t>(append(p, "PROXY UNKNOWN\r\n") - out);
    char source_ip[INET6_ADDRSTRLEN];
    char destination_ip[INET6_ADDRSTRLEN];
    if (source.family() == AF_INET && destination.family() == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(source.sockaddr_ptr())->sin_addr, source_ip,
                    sizeof source_ip);
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(destination.sockaddr_ptr())->sin_addr,
                    destination_ip, sizeof destination_ip);
        p = append(p, "PROXY TCP4 ");
    } else {
        const sockaddr_in6 s = as_ipv6(source);
        const sockaddr_in6 d = as_ipv6(destination);
        ::inet_ntop(AF_INET6, &s.sin6_addr, source_ip, sizeof source_ip);
        ::inet_ntop(AF_INET6, &d.sin6_addr, destination_ip, sizeof destination_ip);
        p = append(p, "PROXY TCP6 ");
    }
    p = append(p, source_ip);
    *p++ = ' ';
    p = append(p, destination_ip);
    *p++ = ' ';
    p = append_port(p, source.port());
    *p++ = ' ';
    p = append_port(p, destination.port());
    p = append(p, "\r\n");
    return static_cast<std::size_t>(p - out);
}

std::size_t encode_proxy_v2(const SocketAddress& source, const SocketAddress& destination, char* out) noexcept
{
    char* p = append(out, kV2Signature);
    *p++ = 0x21;  // version 2, command PROXY
    if (!is_inet(source) || !is_inet(destination)) {
        *p++ = 0x00;  // UNSPEC: the receiver keeps the connection's addresses
        *p++ = 0;
        *p++ = 0;
        return static_cast<std::size_t>(p - out);
    }
    const auto put_port = [&p](std::uint16_t network_order) {
        std::memcpy(p, &network_order, 2);
        p += 2;
    };
    if (source.family() == AF_INET && destination.family() == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(source.sockaddr_ptr());
        const auto* d = reinterpret_cast<const sockaddr_in*>(destination.sockaddr_ptr());
        *p++ = 0x11;  // INET, STREAM
        *p++ = 0;
        *p++ = static_cast<char>(kV2Inet4Length);
        std::memcpy(p, &s->sin_addr, 4);
        std::memcpy(p + 4, &d->sin_addr, 4);
        p += 8;
        put_port(s->sin_port);
        put_port(d->sin_port);
    } else {
        const sockaddr_in6 s = as_ipv6(source);
        const sockaddr_in6 d = as_ipv6(destination);
        *p++ = 0x21;  // INET6, STREAM
        *p++ = 0;
        *p++ = static_cast<char>(kV2Inet6Length);
        std::memcpy(p, &s.sin6_addr, 16);
        std::memcpy(p + 16, &d.sin6_addr, 16);
        p += 32;
        put_port(s.sin6_port);
        put_port(d.sin6_port);
    }
    return static_cast<std::size_t>(p - out);
}

std::size_t encode_proxy_header(ProxyVersion version, const SocketAddress& source, const SocketAddress& destination,
                                char* out) noexcept
{
    switch (version) {
    case ProxyVersion::Off: return 0;
    case ProxyVersion::V1: return encode_proxy_v1(source, destination, out);
    case ProxyVersion::V2: return encode_proxy_v2(source, destination, out);
    }
    return 0;
}

} // namespace sluice
