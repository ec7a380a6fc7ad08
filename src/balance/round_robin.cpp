// round_robin: smooth weighted round robin, the nginx algorithm
// (ngx_http_upstream_get_peer, nginx 1.3.1+; HAProxy's lb_fwrr.c reaches the
// same interleaving with a tree).
//
// Each pick, every eligible backend's `current` grows by its weight; the largest
// wins and pays back the sum of the weights it competed with. Over one cycle of
// W = sum(weights) picks each backend is chosen exactly `weight` times, and the
// picks are spread out rather than bunched: 3:2:1 gives a, b, a, c, b, a.
//
// Weights are read from the table on every pick, so an admin's weight change
// and slow start's ramp take effect at once; a backend at max_connections
// sits out like one with weight 0. State is per worker (one instance each): no lock.
#include "algorithms.h"

namespace sluice::balance {

namespace {

class RoundRobinBalancer final : public Balancer {
public:
    RoundRobinBalancer(std::vector<BackendId> members, const BackendTable& table)
        : members_(std::move(members)), current_(members_.size(), 0), table_(table)
    {
    }

    std::optional<BackendId> pick(const PickContext& ctx) override
    {
        std::int64_t total = 0;
        std::size_t best = kNone;
        for (std::size_t i = 0; i < members_.size(); ++i) {
            BackendId id = members_[i];
            std::uint32_t weight = ramped_weight(table_, id, ctx.now_ms);
            if (weight == 0) {
                // Out of rotation: it rejoins from zero, not with credit (or
                // debt) saved from before it went away.
                current_[i] = 0;
                continue;
            }
            // Excluded only for this session: keep its place in the rotation.
            if (is_excluded(ctx, id))
                continue;
            current_[i] += weight;
            total += weight;
            if (best == kNone || current_[i] > current_[best])
                best = i;
        }
        if (best == kNone)
            return std::nullopt;
        current_[best] -= total;
        return members_[best];
    }

private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

    const std::vector<BackendId> members_;
    std::vector<std::int64_t> current_;  // nginx's current_weight, per member
    const BackendTable& table_;
};

} // namespace

std::unique_ptr<Balancer> make_round_robin(std::vector<BackendId> members, const BackendTable& table)
{
    return std::make_unique<RoundRobinBalancer>(std::move(members), table);
}

} // namespace sluice::balance
