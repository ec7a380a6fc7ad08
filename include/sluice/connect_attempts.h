// ConnectAttempts: which backend a new session tries next, and what a failed connect
// means for it.
//
// A connect that fails before any byte reached a backend (refused, unreachable,
// timed out) is counted against that backend (passive health) and retried on
// another one, up to the pool's `retries`. Once bytes flowed, never. A connect
// that fails because this host ran out of descriptors, memory or ports is
// never held against the backend. Loop thread only; one ConnectAttempts per
// connecting session.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/balancer.h"
#include "sluice/errors.h"
#include "sluice/runtime.h"

#include <optional>
#include <string_view>
#include <vector>

namespace sluice {

class ConnectAttempts {
public:
    // `counters`: the worker's own, where a started session is counted.
    ConnectAttempts(const PoolRuntime& pool, PoolBalancer& balancer, BackendTable& table, BackendCounters& counters)
        : pool_(&pool), balancer_(&balancer), table_(&table), counters_(&counters)
    {
    }

    // The next backend to try (acquired in the table, within its
    // max_connections), or nullopt when the retries are spent or no backend
    // is usable. Logs the pool's "no usable backend" state once per change.
    // nullopt with should_queue() set: the client may wait in the pool's
    // queue instead (see allow_queue()).
    std::optional<BackendId> next(const SocketAddress& client, std::int64_t now_ms);

    // The session can wait in the pool's queue (TCP; a UDP datagram cannot).
    // Then a first attempt that finds every usable backend full, or other
    // clients already waiting, returns nullopt with should_queue() set.
    void allow_queue() noexcept { may_queue_ = true; }
    bool should_queue() const noexcept { return should_queue_; }
    // For PoolQueue::admit: a pick that took a slot, not yet counted.
    std::optional<BackendId> acquire_any(const SocketAddress& client, std::int64_t now_ms);
    // The session starts on `backend`, already acquired (by acquire_any or
    // handed over by the queue): counts it.
    void adopt(BackendId backend);

    // The connect to `backend` failed with `error`: counts it, releases the
    // backend, remembers not to try it again.
    void failed(BackendId backend, SysError error, std::int64_t now_ms);

    // Connecting to `backend` failed for want of a local resource
    // (is_local_resource_error): releases the backend without counting it as
    // a failure, since no backend is to blame, and logs the shortage
    // (note_client_turned_away). The session then closes its client; service
    // resumes by itself once descriptors or memory free up.
    void local_shortage(BackendId backend, SysError error, std::int64_t now_ms);

    // Retries already used (failed attempts).
    int attempts_failed() const noexcept { return failed_; }

private:
    // True when some usable backend of the pool is at its max_connections.
    bool any_full(std::int64_t now_ms) const noexcept;

    const PoolRuntime* pool_;
    PoolBalancer* balancer_;
    BackendTable* table_;
    BackendCounters* counters_;
    // Backends not to pick again: those whose connect failed, and those
    // found full by try_acquire after the balancer chose them (another
    // worker took the last slot in between). Allocates only then.
    std::vector<BackendId> tried_;
    int failed_ = 0;
    bool may_queue_ = false;
    bool should_queue_ = false;
};

// Any thread: a session of `pool` stops using `backend` (BackendTable::release)
// and, when clients of the pool wait, the slot goes to the longest-waiting
// one. Every session end and failed connect gives its backend back here.
inline void release_backend_slot(BackendTable& table, const PoolRuntime& pool, BackendId backend, std::int64_t now_ms)
{
    table.release(backend);
    if (pool.queue) [[unlikely]]
        pool.queue->slot_freed(table, backend, now_ms);
}

// Any thread: a `what` ("connect" for TCP, "datagram" for UDP) to `backend`
// of `pool` failed with `error`, a fault of the backend or the way to it.
// Counts it towards max_fails within fail_timeout; returns true when that
// marked the backend down, which is logged here unless active checks will
// log it. The one rule for passive failures, TCP and UDP alike.
bool record_passive_failure(BackendTable& table, const PoolRuntime& pool, BackendId backend, std::string_view what,
                            SysError error, std::int64_t now_ms);

// Any thread: a client was turned away because this host ran out of `error`
// (is_local_resource_error). Logs at most once per interval, process-wide,
// with the number of clients turned away meanwhile.
void note_client_turned_away(SysError error, std::int64_t now_ms) noexcept;

} // namespace sluice
