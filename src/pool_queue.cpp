#include "sluice/pool_queue.h"

#include "sluice/event_loop.h"

#include <algorithm>

namespace sluice {

bool PoolQueue::slot_freed(BackendTable& table, BackendId backend, std::int64_t now_ms)
{
    // Pairs with announce(): the caller's release is ordered before this load.
    store_load_barrier();
    if (length_.load(std::memory_order_relaxed) == 0) [[likely]]
        return false;
    std::lock_guard lock(mutex_);
    if (waiting_.empty() || !table.usable(backend, now_ms) || !table.try_acquire(backend))
        return false;
    grant_front(table, backend, now_ms);
    return true;
}

void PoolQueue::offer_free_slots(BackendTable& table, const std::vector<BackendId>& backends, std::int64_t now_ms)
{
    for (BackendId id : backends)
        while (slot_freed(table, id, now_ms)) {
        }
}

void PoolQueue::grant_front(BackendTable& table, BackendId id, std::int64_t now_ms)
{
    std::shared_ptr<QueueWaiter> waiter = std::move(waiting_.front());
    waiting_.pop_front();
    announce(waiting_.size());
    served_.fetch_add(1, std::memory_order_relaxed);
    wait_ms_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(now_ms - waiter->queued_ms, 0)),
                       std::memory_order_relaxed);
    // The table outlives every worker loop; the queue is kept alive by the
    // task itself (the generations holding it may all be gone by then).
    EventLoop* loop = waiter->loop;
    loop->post([queue = shared_from_this(), waiter = std::move(waiter), id, &table] {
        if (waiter->client) {
            waiter->client->on_slot_granted(id);
            return;
        }
        // The session ended while the slot was on its way: the next in line gets it.
        table.release(id);
        queue->slot_freed(table, id, monotonic_ms());
    });
}

bool PoolQueue::leave(const QueueWaiter& waiter, bool timed_out)
{
    if (timed_out)
        timed_out_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    auto found = std::find_if(waiting_.begin(), waiting_.end(),
                              [&](const std::shared_ptr<QueueWaiter>& w) { return w.get() == &waiter; });
    if (found == waiting_.end())
        return false;
    waiting_.erase(found);
    announce(waiting_.size());
    return true;
}

QueueTotals PoolQueue::totals() const noexcept
{
    constexpr auto relaxed = std::memory_order_relaxed;
    return QueueTotals{length_.load(relaxed), queued_.load(relaxed), served_.load(relaxed),
                       timed_out_.load(relaxed), refused_.load(relaxed), wait_ms_.load(relaxed)};
}

} // namespace sluice
