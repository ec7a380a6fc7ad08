#include "sluice/cidr.h"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>

namespace sluice {

namespace {

bool bit_at(const std::uint8_t* bytes, int index) noexcept
{
    return (bytes[index / 8] >> (7 - index % 8)) & 1;
}

// Bytes of an IPv4 address carried as ::ffff:a.b.c.d, else nullptr.
const std::uint8_t* mapped_v4(const in6_addr& a) noexcept
{
    static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a.s6_addr, kPrefix, sizeof(kPrefix)) == 0 ? a.s6_addr + 12 : nullptr;
}

} // namespace

std::optional<std::string> CidrSet::add(std::string_view text)
{
    const std::string quoted = "\"" + std::string(text) + "\"";
    std::string_view ip = text;
    std::optional<int> prefix_len;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
        ip = text.substr(0, slash);
        std::string_view len_text = text.substr(slash + 1);
        int len = -1;
        auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
        if (len_text.empty() || ec != std::errc{} || end != len_text.data() + len_text.size() || len < 0)
            return quoted + " is not a CIDR: the prefix length after '/' must be a number";
        prefix_len = len;
    }

    char buf[INET6_ADDRSTRLEN + 1];
    if (ip.empty() || ip.size() >= sizeof(buf))
        return quoted + " is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)";
    std::memcpy(buf, ip.data(), ip.size());
    buf[ip.size()] = '\0';

    std::uint8_t bytes[16] = {};
    int width = 0;
    if (::inet_pton(AF_INET, buf, bytes) == 1)
        width = 32;
    else if (::inet_pton(AF_INET6, buf, bytes) == 1)
        width = 128;
    else
        return quoted + " is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)";

    const int len = prefix_len.value_or(width);
    if (len > width)
        return quoted + ": the prefix length must be at most " + std::to_string(width);
    for (int i = len; i < width; ++i) {
        if (bit_at(bytes, i))
            return quoted + " has address bits set past /" + std::to_string(len) +
                   " (write the network address, e.g. the first address of the range)";
    }
    insert(width == 32 ? kRootV4 : kRootV6, bytes, len);
    ++entries_;
    return std::nullopt;
}

void CidrSet::insert(std::uint32_t root, const std::uint8_t* bits, int prefix_len)
{
    std::uint32_t node = root;
    for (int i = 0; i < prefix_len; ++i) {
        if (nodes_[node].covers)
            return;  // a shorter prefix already covers this one
        const int b = bit_at(bits, i);
        if (nodes_[node].child[b] == 0) {
            nodes_.emplace_back();
            nodes_[node].child[b] = static_cast<std::uint32_t>(nodes_.size() - 1);
        }
        node = nodes_[node].child[b];
    }
    nodes_[node].covers = true;
    nodes_[node].child[0] = nodes_[node].child[1] = 0;  // longer prefixes below are now redundant
}

bool CidrSet::lookup(std::uint32_t root, const std::uint8_t* bits, int bit_count) const noexcept
{
    std::uint32_t node = root;
    for (int i = 0;; ++i) {
        if (nodes_[node].covers)
            return true;
        if (i == bit_count)
            return false;
        node = nodes_[node].child[bit_at(bits, i)];
        if (node == 0)
            return false;
    }
}

bool CidrSet::contains(const SocketAddress& address) const noexcept
{
    if (entries_ == 0)
        return false;
    if (address.family() == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(address.sockaddr_ptr());
        return lookup(kRootV4, reinterpret_cast<const std::uint8_t*>(&v4->sin_addr), 32);
    }
    if (address.family() == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address.sockaddr_ptr());
        if (const std::uint8_t* v4 = mapped_v4(v6->sin6_addr))
            return lookup(kRootV4, v4, 32);
        return lookup(kRootV6, v6->sin6_addr.s6_addr, 128);
    }
    return false;
}

} // namespace sluice
