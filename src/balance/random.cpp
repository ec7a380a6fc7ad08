// random: power of two random choices (Mitzenmacher, "The Power of Two Choices
// in Randomized Load Balancing", 2001): draw two distinct eligible backends at
// random and keep the less loaded one, loads weighted as in least_conn. It
// avoids the herd that plain least_conn causes when many workers read the same
// stale counts, while still steering away from overloaded backends.
//
// Each instance (one per worker) owns a splitmix64 generator seeded from a
// process-wide counter and the clock at construction: no shared RNG, no lock.
#include "algorithms.h"

#include <atomic>

namespace sluice::balance {

namespace {

// splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): one add and a mix per draw; passes BigCrush.
class SplitMix64 {
public:
    explicit SplitMix64(std::uint64_t seed) noexcept : state_(seed) {}

    std::uint64_t next() noexcept
    {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    // Uniform in [0, bound) by Lemire's multiply-shift; bound < 2^32. The bias
    // is below bound / 2^32, far under anything a balancer could notice.
    std::uint32_t below(std::uint32_t bound) noexcept
    {
        return static_cast<std::uint32_t>(((next() >> 32) * bound) >> 32);
    }

private:
    std::uint64_t state_;
};

std::uint64_t fresh_seed() noexcept
{
    static std::atomic<std::uint64_t> instances{0};
    std::uint64_t n = instances.fetch_add(1, std::memory_order_relaxed);
    return static_cast<std::uint64_t>(monotonic_ms()) * 0x9e3779b97f4a7c15ULL ^ (n << 32) ^ n;
}

class RandomBalancer final : public Balancer {
public:
    RandomBalancer(std::vector<BackendId> members, const BackendTable& table)
        : members_(std::move(members)), table_(table), rng_(fresh_seed())
    {
    }

    std::optional<BackendId> pick(const PickContext& ctx) override
    {
        if (members_.empty())
            return std::nullopt;
        std::size_t first = draw_eligible(ctx, kNone);
        if (first == kNone)
            return std::nullopt;
        std::size_t second = draw_eligible(ctx, first);
        if (second == kNone)
            return members_[first];

        BackendId a = members_[first];
        BackendId b = members_[second];
        std::uint32_t weight_a = ramped_weight(table_, a, ctx.now_ms);
        std::uint32_t weight_b = ramped_weight(table_, b, ctx.now_ms);
        std::uint32_t active_a = table_.active(a);
        std::uint32_t active_b = table_.active(b);
        if (less_loaded(active_b, weight_b, active_a, weight_a))
            return b;
        if (less_loaded(active_a, weight_a, active_b, weight_b))
            return a;
        // Equal load: the heavier backend has more room; else the first draw.
        return weight_b > weight_a ? b : a;
    }

private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    // Rejection sampling keeps the draw uniform over eligible backends; after
    // this many misses (most of the pool is down or excluded) a scan from a
    // random start takes over so a pick stays bounded.
    static constexpr int kDrawAttempts = 8;

    bool eligible(const PickContext& ctx, std::size_t i) const noexcept
    {
        BackendId id = members_[i];
        return ramped_weight(table_, id, ctx.now_ms) != 0 && !is_excluded(ctx, id);
    }

    // A random eligible member index other than `other`, or kNone.
    std::size_t draw_eligible(const PickContext& ctx, std::size_t other) noexcept
    {
        const auto n = static_cast<std::uint32_t>(members_.size());
        for (int attempt = 0; attempt < kDrawAttempts; ++attempt) {
            std::size_t i = rng_.below(n);
            if (i != other && eligible(ctx, i))
                return i;
        }
        std::size_t start = rng_.below(n);
        for (std::size_t step = 0; step < n; ++step) {
            std::size_t i = start + step;
            if (i >= n)
                i -= n;
            if (i != other && eligible(ctx, i))
                return i;
        }
        return kNone;
    }

    const std::vector<BackendId> members_;
    const BackendTable& table_;
    SplitMix64 rng_;
};

} // namespace

std::unique_ptr<Balancer> make_random(std::vector<BackendId> members, const BackendTable& table)
{
    return std::make_unique<RandomBalancer>(std::move(members), table);
}

} // namespace sluice::balance
