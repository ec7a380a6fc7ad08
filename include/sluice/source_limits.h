// SourceLimits: how many sessions each client IP has open on one listener,
// across all workers (max_connections_per_source).
//
// The count must be exact across workers (the kernel spreads one client's
// connections over every worker's SO_REUSEPORT socket), so it is one table
// shared by all of them: a hash map per shard, each shard behind its own mutex
// and on its own cache line, the shard picked by the IP's hash. A lock is held
// for one map lookup, never across I/O; two workers contend only when their
// clients hash to the same shard at the same moment. An IP is in the map only
// while it has sessions, so the table's size is the number of distinct
// clients connected, not the number ever seen.
//
// SourceLease is one counted session: it gives the count back exactly once,
// when released or destroyed, to the table and for the address it was taken
// for, whatever happens to the session's client address later.
//
// Any thread.
#pragma once

#include "sluice/addr.h"

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace sluice {

class SourceLimits {
public:
    static constexpr std::size_t kShards = 64;

    // Counts one more session for `client`'s IP (the port is ignored; an
    // IPv4-mapped IPv6 address counts as its IPv4 address) unless it already
    // has `limit`. Returns whether it was counted; out of memory it is not
    // (false), which keeps every count exact: the client is turned away.
    bool try_acquire(const SocketAddress& client, std::uint32_t limit) noexcept;
    // Gives back one session counted by try_acquire for the same IP.
    void release(const SocketAddress& client) noexcept;
    // Sessions counted for `client`'s IP now (admin, tests).
    std::uint32_t count(const SocketAddress& client) const noexcept;

private:
    struct IpKey {
        std::array<std::uint8_t, 16> bytes{};
        std::uint8_t family = 0;
        bool operator==(const IpKey&) const noexcept = default;
    };
    struct IpKeyHash {
        std::size_t operator()(const IpKey& key) const noexcept;
    };
    struct alignas(64) Shard {
        mutable std::mutex mutex;
        std::unordered_map<IpKey, std::uint32_t, IpKeyHash> counts;
    };

    static IpKey key_of(const SocketAddress& client) noexcept;
    Shard& shard_of(const IpKey& key) noexcept { return shards_[IpKeyHash{}(key) % kShards]; }
    const Shard& shard_of(const IpKey& key) const noexcept { return shards_[IpKeyHash{}(key) % kShards]; }

    std::array<Shard, kShards> shards_;
};

// One session counted in a SourceLimits. Move-only; empty when default-made.
class SourceLease {
public:
    SourceLease() = default;
    // Takes ownership of a count try_acquire() just made for `client`.
    SourceLease(std::shared_ptr<SourceLimits> limits, const SocketAddress& client) noexcept
        : limits_(std::move(limits)), client_(client)
    {
    }
    SourceLease(SourceLease&& other) noexcept : limits_(std::move(other.limits_)), client_(other.client_) {}
    SourceLease& operator=(SourceLease&& other) noexcept
    {
        if (this != &other) {
            release();
            limits_ = std::move(other.limits_);
            client_ = other.client_;
        }
        return *this;
    }
    SourceLease(const SourceLease&) = delete;
    SourceLease& operator=(const SourceLease&) = delete;
    ~SourceLease() { release(); }

    bool held() const noexcept { return limits_ != nullptr; }
    // Gives the count back (once; later calls do nothing).
    void release() noexcept
    {
        if (limits_) {
            limits_->release(client_);
            limits_.reset();
        }
    }

private:
    std::shared_ptr<SourceLimits> limits_;
    SocketAddress client_;  // the address the count was taken for
};

} // namespace sluice
