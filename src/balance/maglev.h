// Maglev lookup table: consistent hashing with near-perfect balance
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, §3.4; weights as in Katran's lib/MaglevBase.h).
//
// Each member has a permutation of the M table positions, fixed by two hashes
// of its identity (offset and skip, §3.4). populate() lets members take turns
// claiming the next free position of their permutation until the table is
// full. Because every turn claims exactly one position, members of equal weight
// end with floor(M/N) or ceil(M/N) entries; and because the permutations do not
// depend on the other members, removing one member mostly moves only its own
// positions. M is a prime, fixed at construction from the number of members (not
// the number up), so members going down and up do not resize the table and move
// everything.
//
// Not thread-safe: one builder owns an instance (IpHashLookup, on the control
// thread) and publishes copies of its entries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sluice::balance {

class MaglevTable {
public:
    using MemberIndex = std::uint16_t;
    static constexpr MemberIndex kEmpty = 0xffff;  // table position with no member
    static constexpr std::size_t kMinimumSize = 101;
    // M per member. §3.4 only asks for M much larger than N, and at 100 x N an
    // unlucky single removal can move up to ~5% of the other members' keys;
    // at 400 x N every removal from 3..100 members keeps >= 97% in place, for
    // 800 bytes of table per member and a rebuild still well under 2 ms at 300.
    static constexpr std::size_t kEntriesPerMember = 400;
    // Large pools: 400 x N stops at this many positions, and past 10,000
    // members M grows as 100 x N (the paper's "M >> N"; ARCHITECTURE.md's
    // floor). A populate costs about M log M with the table out of cache: at
    // 10,000 members 4 M positions took ~200 ms, 1 M takes well under 100 ms,
    // and at thousands of members one removal moves a tiny share anyway.
    static constexpr std::size_t kLargeTableSize = 1'000'000;
    static constexpr std::size_t kLargeEntriesPerMember = 100;

    // `identities[i]` is a stable key for member i (backend_identity of its
    // name): equal identities give equal permutations. populate() gives turns
    // in index order, so callers list members in an order every instance
    // shares (ip_hash: by identity). Allocates everything populate() needs.
    explicit MaglevTable(std::span<const std::uint64_t> identities);

    // Smallest prime >= max(kMinimumSize, min(kEntriesPerMember * members,
    // kLargeTableSize), kLargeEntriesPerMember * members). Equal members
    // (which get floor(M/N) or ceil(M/N) entries) differ by well under 1%.
    // Pools of up to 2,500 members keep 400 x N, so their mapping is what it
    // was before the large-pool rule.
    static std::size_t table_size_for(std::size_t members) noexcept;

    // Refills the table. `weights[i]` is how many turns member i takes per round
    // (Katran); 0 leaves it out. All zero gives an empty table. No allocation.
    void populate(std::span<const std::uint16_t> weights) noexcept;

    std::size_t size() const noexcept { return entries_.size(); }
    std::size_t members() const noexcept { return offsets_.size(); }
    // The table position a key lands on, here or in any table of `size` positions.
    std::size_t position_of(std::uint64_t key) const noexcept { return position_in(key, entries_.size()); }
    static std::size_t position_in(std::uint64_t key, std::size_t size) noexcept;
    // The member at a position, or kEmpty (only when populate had no member).
    MemberIndex at(std::size_t position) const noexcept { return entries_[position]; }
    MemberIndex lookup(std::uint64_t key) const noexcept { return at(position_of(key)); }
    const std::vector<MemberIndex>& entries() const noexcept { return entries_; }

private:
    std::vector<MemberIndex> entries_;      // M positions
    std::vector<std::uint32_t> offsets_;    // permutation start, per member
    std::vector<std::uint32_t> skips_;      // permutation step, in [1, M), per member
    std::vector<std::uint32_t> cursors_;    // populate scratch: next permutation position
};

} // namespace sluice::balance
