#include "sluice/stats.h"

namespace sluice {

ListenerCounters::ListenerCounters(unsigned workers)
    : workers_(workers > 0 ? workers : 1), per_worker_(std::make_unique<ListenerStats[]>(workers_))
{
}

ListenerTotals ListenerCounters::total() const noexcept
{
    constexpr auto relaxed = std::memory_order_relaxed;
    ListenerTotals sum;
    for (unsigned i = 0; i < workers_; ++i) {
        const ListenerStats& s = per_worker_[i];
        sum.accepted += s.accepted.load(relaxed);
        sum.rejected += s.rejected.load(relaxed);
        sum.bytes_in += s.bytes_in.load(relaxed);
        sum.bytes_out += s.bytes_out.load(relaxed);
        sum.dropped += s.dropped.load(relaxed);
        sum.proxy_refused += s.proxy_refused.load(relaxed);
        sum.denied += s.denied.load(relaxed);
        sum.source_limited += s.source_limited.load(relaxed);
    }
    return sum;
}

PoolHistograms::PoolHistograms(unsigned workers)
    : workers_(workers > 0 ? workers : 1), per_worker_(std::make_unique<PoolWorkerHistograms[]>(workers_))
{
}

PoolHistogramTotals PoolHistograms::total() const noexcept
{
    PoolHistogramTotals sum;
    for (unsigned i = 0; i < workers_; ++i) {
        per_worker_[i].session_duration.read_into(sum.session_duration);
        per_worker_[i].queue_wait.read_into(sum.queue_wait);
    }
    return sum;
}

} // namespace sluice
