#include "sluice/source_limits.h"

#include <cstring>

#include <netinet/in.h>

namespace sluice {

SourceLimits::IpKey SourceLimits::key_of(const SocketAddress& client) noexcept
{
    IpKey key;
    if (client.family() == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(client.sockaddr_ptr());
        std::memcpy(key.bytes.data(), &v4->sin_addr, 4);
        key.family = 4;
    } else if (client.family() == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(client.sockaddr_ptr());
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
            // A dual-stack socket's IPv4 client is the same client as on an
            // IPv4 socket (as CidrSet treats it).
            std::memcpy(key.bytes.data(), reinterpret_cast<const std::uint8_t*>(&v6->sin6_addr) + 12, 4);
            key.family = 4;
        } else {
            std::memcpy(key.bytes.data(), &v6->sin6_addr, 16);
            key.family = 6;
        }
    }
    return key;
}

std::size_t SourceLimits::IpKeyHash::operator()(const IpKey& key) const noexcept
{
    // FNV-1a: the shard index and the map's bucket both come from it.
    std::uint64_t hash = 1469598103934665603ull ^ key.family;
    for (std::uint8_t byte : key.bytes)
        hash = (hash ^ byte) * 1099511628211ull;
    return static_cast<std::size_t>(hash ^ (hash >> 29));
}

bool SourceLimits::try_acquire(const SocketAddress& client, std::uint32_t limit) noexcept
{
    const IpKey key = key_of(client);
    Shard& shard = shard_of(key);
    std::lock_guard lock(shard.mutex);
    try {
        std::uint32_t& count = shard.counts[key];
        if (count >= limit)
            return false;
        ++count;
        return true;
    } catch (...) {
        return false;  // out of memory: turned away, so the counts stay exact
    }
}

void SourceLimits::release(const SocketAddress& client) noexcept
{
    const IpKey key = key_of(client);
    Shard& shard = shard_of(key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.counts.find(key);
    if (it == shard.counts.end())
        return;
    if (--it->second == 0)
        shard.counts.erase(it);
}

std::uint32_t SourceLimits::count(const SocketAddress& client) const noexcept
{
    const IpKey key = key_of(client);
    const Shard& shard = shard_of(key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.counts.find(key);
    return it == shard.counts.end() ? 0 : it->second;
}

} // namespace sluice
