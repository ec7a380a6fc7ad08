// Maglev populate (Eisenbud et al., NSDI 2016, §3.4, Pseudocode 1), with
// weighted turns as in Katran. See maglev.h for the contract.
#include "maglev.h"

#include <algorithm>
#include <cassert>

namespace sluice::balance {

namespace {

// The murmur3 / splitmix64 finalizer: a bijective 64-bit mix, so two seeds give
// two independent-looking hashes of one identity.
std::uint64_t mix64(std::uint64_t x) noexcept
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

// Two fixed seeds: changing them reshuffles every client, so they never change.
constexpr std::uint64_t kOffsetSeed = 0x6d61676c65762d6fULL;  // "maglev-o"
constexpr std::uint64_t kSkipSeed = 0x6d61676c65762d73ULL;    // "maglev-s"
constexpr std::uint64_t kKeySeed = 0x6d61676c65762d6bULL;     // "maglev-k"

bool is_prime(std::size_t n) noexcept
{
    if (n < 2)
        return false;
    if (n % 2 == 0)
        return n == 2;
    for (std::size_t d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return false;
    return true;
}

} // namespace

std::size_t MaglevTable::table_size_for(std::size_t members) noexcept
{
    std::size_t m = std::max({kMinimumSize, std::min(members * kEntriesPerMember, kLargeTableSize),
                              members * kLargeEntriesPerMember});
    while (!is_prime(m))
        ++m;
    return m;
}

MaglevTable::MaglevTable(std::span<const std::uint64_t> identities)
    : entries_(table_size_for(identities.size()), kEmpty),
      offsets_(identities.size()),
      skips_(identities.size()),
      cursors_(identities.size())
{
    assert(identities.size() < kEmpty);
    const std::uint64_t m = entries_.size();
    for (std::size_t i = 0; i < identities.size(); ++i) {
        // §3.4: offset = h1(name) mod M, skip = h2(name) mod (M - 1) + 1. M is
        // prime, so every skip in [1, M) walks all M positions.
        offsets_[i] = static_cast<std::uint32_t>(mix64(identities[i] ^ kOffsetSeed) % m);
        skips_[i] = static_cast<std::uint32_t>(mix64(identities[i] ^ kSkipSeed) % (m - 1) + 1);
    }
}

void MaglevTable::populate(std::span<const std::uint16_t> weights) noexcept
{
    assert(weights.size() == offsets_.size());
    const std::uint32_t m = static_cast<std::uint32_t>(entries_.size());
    std::fill(entries_.begin(), entries_.end(), kEmpty);

    bool any = false;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        cursors_[i] = offsets_[i];
        any = any || weights[i] != 0;
    }
    if (!any)
        return;

    // Pseudocode 1: members take turns, each claiming the first position of its
    // permutation not yet taken, until all M are filled. A member of weight w
    // takes w turns per round (Katran), so its share is w / sum(weights).
    std::uint32_t filled = 0;
    for (;;) {
        for (std::size_t i = 0; i < weights.size(); ++i) {
            for (std::uint16_t turn = 0; turn < weights[i]; ++turn) {
                std::uint32_t c = cursors_[i];
                while (entries_[c] != kEmpty) {
                    c += skips_[i];
                    if (c >= m)
                        c -= m;
                }
                entries_[c] = static_cast<MemberIndex>(i);
                c += skips_[i];
                cursors_[i] = c >= m ? c - m : c;
                if (++filled == m)
                    return;
            }
        }
    }
}

std::size_t MaglevTable::position_in(std::uint64_t key, std::size_t size) noexcept
{
    // The key (an FNV-1a of the client IP) is mixed again so that nearby
    // addresses spread over the table.
    return mix64(key ^ kKeySeed) % size;
}

} // namespace sluice::balance
