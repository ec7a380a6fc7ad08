// least_conn: the backend with the fewest active sessions per unit of weight,
// counted across all workers (BackendTable::active), as HAProxy's lb_fwlc.c.
//
// Loads compare as active_a * weight_b < active_b * weight_a (no division).
// Ties go to the first eligible backend after the one picked last (a rotating
// start), so equally loaded backends fill evenly instead of the first in the
// list taking every tie. The counts are read while other workers change them
// (accepted race, see backend_table.cpp): two workers may pick the same
// backend at once, which evens out. Weights are slow start's ramped ones:
// a backend that just came back, with no sessions, would otherwise take every
// new session until it caught up.
#include "algorithms.h"

namespace sluice::balance {

namespace {

class LeastConnBalancer final : public Balancer {
public:
    LeastConnBalancer(std::vector<BackendId> members, const BackendTable& table)
        : members_(std::move(members)), table_(table)
    {
    }

    std::optional<BackendId> pick(const PickContext& ctx) override
    {
        const std::size_t n = members_.size();
        std::size_t best = kNone;
        std::uint32_t best_active = 0;
        std::uint32_t best_weight = 0;
        for (std::size_t step = 0; step < n; ++step) {
            std::size_t i = start_ + step;
            if (i >= n)
                i -= n;
            BackendId id = members_[i];
            std::uint32_t weight = ramped_weight(table_, id, ctx.now_ms);
            if (weight == 0 || is_excluded(ctx, id))
                continue;
            std::uint32_t active = table_.active(id);
            // Strictly less: on a tie the earlier one in rotation order stays.
            if (best == kNone || less_loaded(active, weight, best_active, best_weight)) {
                best = i;
                best_active = active;
                best_weight = weight;
            }
        }
        if (best == kNone)
            return std::nullopt;
        start_ = best + 1 == n ? 0 : best + 1;
        return members_[best];
    }

private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

    const std::vector<BackendId> members_;
    const BackendTable& table_;
    std::size_t start_ = 0;  // where the next scan begins: just after the last pick
};

} // namespace

std::unique_ptr<Balancer> make_least_conn(std::vector<BackendId> members, const BackendTable& table)
{
    return std::make_unique<LeastConnBalancer>(std::move(members), table);
}

} // namespace sluice::balance
