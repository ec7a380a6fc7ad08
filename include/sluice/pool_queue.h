// PoolQueue: clients of one pool waiting for a backend slot (max_connections),
// first come first served across every worker.
//
// The queue is off the fast path. A pool without queue_timeout has none, and
// a pool with one pays, per released session, a fence and one load of the
// queue's length while nobody waits. Only a client that found every usable
// backend full takes the mutex and waits; only a release that sees waiters
// takes it to hand the slot over.
//
// A freed slot goes to the longest-waiting client as a reservation: the
// releasing thread acquires the backend again (BackendTable::try_acquire) on
// the waiter's behalf and posts the grant to the waiter's worker (ev_async,
// EventLoop::post), so a newcomer on another worker cannot take it in
// between. Newcomers queue behind waiting clients rather than overtake them.
//
// No lost wake-up: a client about to queue publishes the new length, then
// (after a seq_cst fence) retries the backends; a release lowers `active`,
// then (after a seq_cst fence) reads the length. One of the two sees the
// other, so a slot freed at that moment is taken by the retry or handed over.
#pragma once

#include "sluice/backend_table.h"

#include <atomic>
#include <vector>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

namespace sluice {

class EventLoop;

// What a waiting session gives the queue.
class QueueClient {
public:
    // Its own loop thread: `backend` is acquired in the table for it (the
    // client now owns that count and releases it as any session does).
    virtual void on_slot_granted(BackendId backend) = 0;

protected:
    ~QueueClient() = default;
};

// One queued client. Shared (std::shared_ptr) by the queue and a grant on
// its way: the session may end on its worker while another worker is handing
// it a slot, and the grant must then find out and give the slot back.
struct QueueWaiter {
    QueueWaiter(EventLoop& loop, QueueClient& client, std::int64_t queued_ms) noexcept
        : loop(&loop), client(&client), queued_ms(queued_ms)
    {
    }
    EventLoop* loop;       // the client's worker
    QueueClient* client;   // that loop's thread only; null once the session ended
    std::int64_t queued_ms;
};

// What `show servers`, `show stat` and /metrics report of a pool's queue.
struct QueueTotals {
    std::uint64_t waiting = 0;     // clients queued now
    std::uint64_t queued = 0;      // clients that ever waited
    std::uint64_t served = 0;      // ... and were handed a slot
    std::uint64_t timed_out = 0;   // ... and were closed at queue_timeout
    std::uint64_t refused = 0;     // clients closed at once: max_queue reached
    std::uint64_t wait_ms = 0;     // time the served ones waited, summed
};

// A full (store-load) barrier: a write before it is visible to any thread
// before a read after it is done (the two sides of the queue's hand-off, see
// above). ThreadSanitizer does not model std::atomic_thread_fence (GCC refuses
// it under -fsanitize=thread); there a seq_cst read-modify-write of one shared
// atomic stands in: a locked instruction (the same full barrier on x86), and
// an order TSan follows.
inline void store_load_barrier() noexcept
{
#if defined(__SANITIZE_THREAD__)
    static std::atomic<unsigned> barrier{0};
    barrier.fetch_add(1, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

class PoolQueue : public std::enable_shared_from_this<PoolQueue> {
public:
    enum class Admission : std::uint8_t {
        Acquired,  // a slot was free after all: `acquire` took it
        Queued,    // the waiter is in the queue; a grant or leave() follows
        Refused,   // max_queue clients already wait
    };

    // Any thread: someone waits. Newcomers that see it queue behind.
    bool has_waiters() const noexcept { return length_.load(std::memory_order_relaxed) != 0; }

    // A new client's worker, when every usable backend was full (or others
    // wait). Under the lock: slots `acquire` finds now go first to clients
    // already waiting, in order; if then nobody waits, `acquire` is tried for
    // this client (Acquired, id in *acquired); else the waiter is queued
    // unless `max_queue` (0 = no bound) clients wait already.
    // `acquire`: std::optional<BackendId>(), a pick that took a slot.
    template <typename Acquire>
    Admission admit(const std::shared_ptr<QueueWaiter>& waiter, std::size_t max_queue, BackendTable& table,
                    Acquire&& acquire, BackendId* acquired)
    {
        std::lock_guard lock(mutex_);
        while (!waiting_.empty()) {
            std::optional<BackendId> id = acquire();
            if (!id)
                break;
            grant_front(table, *id, waiter->queued_ms);
        }
        if (waiting_.empty()) {
            announce(1);
            if (std::optional<BackendId> id = acquire()) {
                announce(0);
                *acquired = *id;
                return Admission::Acquired;
            }
        }
        if (max_queue != 0 && waiting_.size() >= max_queue) {
            announce(waiting_.size());
            refused_.fetch_add(1, std::memory_order_relaxed);
            return Admission::Refused;
        }
        waiting_.push_back(waiter);
        announce(waiting_.size());
        queued_.fetch_add(1, std::memory_order_relaxed);
        return Admission::Queued;
    }

    // Any thread, right after a session of this pool released `backend`
    // (BackendTable::release): hands the slot to the longest-waiting client,
    // if any waits and the backend is still usable at `now_ms`. Returns true
    // when a waiter got it.
    bool slot_freed(BackendTable& table, BackendId backend, std::int64_t now_ms);

    // Control thread, every ServiceWatch tick while clients wait: offers
    // every free slot of `backends` (in order) to the waiters. Releases alone
    // would leave them waiting when capacity appears without one: a backend
    // comes up or is set ready, a reload raises max_connections.
    void offer_free_slots(BackendTable& table, const std::vector<BackendId>& backends, std::int64_t now_ms);

    // The waiter's loop thread: the client gives up (`timed_out`: at
    // queue_timeout; else its session ended). Returns true when it was still
    // queued; false when a grant is already on its way, which then gives the
    // slot back (the session has cleared waiter.client).
    bool leave(const QueueWaiter& waiter, bool timed_out);

    // Any thread.
    QueueTotals totals() const noexcept;

private:
    // Under the lock: the backend `id`, acquired, goes to the first waiter.
    void grant_front(BackendTable& table, BackendId id, std::int64_t now_ms);
    // Under the lock: publishes the length, fenced (see the file comment).
    void announce(std::size_t length) noexcept
    {
        length_.store(static_cast<std::uint32_t>(length), std::memory_order_relaxed);
        store_load_barrier();
    }

    std::mutex mutex_;
    std::deque<std::shared_ptr<QueueWaiter>> waiting_;  // the longest-waiting first
    std::atomic<std::uint32_t> length_{0};  // waiting_.size(), readable without the lock
    std::atomic<std::uint64_t> queued_{0};
    std::atomic<std::uint64_t> served_{0};
    std::atomic<std::uint64_t> timed_out_{0};
    std::atomic<std::uint64_t> refused_{0};
    std::atomic<std::uint64_t> wait_ms_{0};
};

} // namespace sluice
