// IpHashLookup: ip_hash's Maglev lookup table for one member set (a pool's
// primaries, or its backups), built by one thread and shared by every worker.
//
// A Maglev build costs time in proportion to the table (27 ms CPU for a
// 10,000-backend pool, bench/README.md), so no worker ever builds one. The
// control thread builds when the runtime is made (build_runtime) and again
// whenever the set of usable members or their weights changed
// (Server::refresh_ip_hash, woken by BackendTable's change listener). Each
// build is published whole, as an immutable Build behind a shared_ptr: a
// worker's pick reads one counter to learn whether a newer build exists, and
// only when one does copies the shared_ptr, under a mutex that the builder
// holds just to swap the pointer in (never while it builds, and the old build
// is released outside it). So a worker never waits for a build, and it keeps
// the build it has until it takes the next one. (A mutex rather than
// std::atomic<std::shared_ptr>: libstdc++ 12 implements that with a lock bit
// ThreadSanitizer cannot see, and it is no more lock-free.)
//
// Until a change is built, a worker picks from the previous build and checks
// each landing backend against the table (health, admin state, weight,
// max_connections), so a backend that went down is skipped at once (its
// clients take the next usable backend in table order) and one that came up
// gets its clients back as soon as the new build is published.
#pragma once

#include "sluice/backend_table.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace sluice {

namespace balance {
class MaglevTable;
}

class IpHashLookup {
public:
    using MemberIndex = std::uint16_t;
    static constexpr MemberIndex kEmpty = 0xffff;  // a position with no member

    // One published table. Immutable once published.
    struct Build {
        std::vector<MemberIndex> entries;  // per position: an index into members(), or kEmpty
        std::size_t members_in_table = 0;  // members built in with a non-zero weight
        // The position a key lands on in a table of `size` positions.
        static std::size_t position_of(std::uint64_t key, std::size_t size) noexcept;
        std::size_t position_of(std::uint64_t key) const noexcept { return position_of(key, entries.size()); }
    };

    // `identities[i]` is backend_identity of members[i]'s name. The members
    // take their Maglev turns in identity order, so the table depends on the
    // set of (name, weight) pairs alone (README "ip_hash"). Builds and
    // publishes the first table from `table` as it is now: the constructing
    // thread is this lookup's builder. `table` must outlive the lookup.
    IpHashLookup(std::vector<BackendId> members, std::vector<std::uint64_t> identities, const BackendTable& table);
    ~IpHashLookup();
    IpHashLookup(const IpHashLookup&) = delete;
    IpHashLookup& operator=(const IpHashLookup&) = delete;

    // The members in identity order: what a Build's entries index.
    const std::vector<BackendId>& members() const noexcept { return members_; }
    // True when this lookup was made from the same members with the same
    // identities (in any order): a new generation may keep it.
    bool same_members(const std::vector<BackendId>& members, const std::vector<std::uint64_t>& identities) const;

    // --- the builder's thread (the control thread; in tests, the test's) ---
    // Rebuilds and publishes when the usable members or their weights differ
    // from the last build's, or a passive mark-down it built around has
    // expired. One acquire load and a compare when the table's version has
    // not moved. Returns true when it published a new build.
    bool refresh(std::int64_t now_ms);
    // The earliest passive mark-down of a member to expire, in monotonic ms
    // (INT64_MAX: none): the builder refreshes then, since an expiry moves no
    // version.
    std::int64_t next_expiry_ms() const noexcept { return next_expiry_ms_; }
    // How long the latest build took (wall ms), for the builder's log line.
    double last_build_ms() const noexcept { return last_build_ms_; }

    // --- any thread ---
    // Bumped after every publish: a worker compares it to the serial it last
    // took, so the common pick costs one acquire load here.
    std::uint64_t published_serial() const noexcept { return serial_.load(std::memory_order_acquire); }
    std::shared_ptr<const Build> latest() const;
    // Tables built so far (tests and benchmarks: "a pick never builds").
    std::uint64_t builds() const noexcept { return builds_.load(std::memory_order_relaxed); }

private:
    IpHashLookup(std::pair<std::vector<BackendId>, std::vector<std::uint64_t>> sorted, const BackendTable& table);
    // refresh(), or with `force` a build whatever changed (the first one).
    bool refresh_now(std::int64_t now_ms, bool force);

    const std::vector<BackendId> members_;       // identity order
    const std::vector<std::uint64_t> identities_;  // parallel to members_
    const BackendTable& table_;

    // Builder's state: the permutations and fill scratch, the weights of
    // the last build, and what the table's version was when it was read.
    std::unique_ptr<balance::MaglevTable> maglev_;
    std::vector<std::uint16_t> built_weights_;
    std::vector<std::uint16_t> scan_weights_;
    std::uint64_t built_version_ = 0;
    std::int64_t next_expiry_ms_ = 0;
    double last_build_ms_ = 0;

    // Held for a pointer copy (latest) or swap (publish), nothing longer.
    mutable std::mutex latest_mutex_;
    std::shared_ptr<const Build> latest_;
    std::atomic<std::uint64_t> serial_{0};
    std::atomic<std::uint64_t> builds_{0};
};

} // namespace sluice
