// sluice-bench's clients: one object per connection (or UDP socket), driven by
// its worker's loop. Loop thread only, all of them.
//
// Pacing. Closed loop (no --rate): a client starts its next request as soon
// as the previous reply is verified. Open loop (--rate R over N clients):
// client i's k-th request is due at origin + i/R + k*N/R; a late client starts
// the next one at once, and latency always counts from the due time, so a
// stall shows up in the percentiles instead of silently lowering the offered
// load (coordinated omission).
//
// Per request the hot path does no allocation: buffers are made once per client.
#pragma once

#include "bench_worker.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"

#include <cstdint>
#include <memory>

namespace sluice::tools {

class BenchClient {
public:
    BenchClient(BenchWorker& worker, unsigned global_index);
    virtual ~BenchClient() = default;
    BenchClient(const BenchClient&) = delete;
    BenchClient& operator=(const BenchClient&) = delete;

    // Schedules the first request.
    void start() { next_request(); }
    // Called a few times per --timeout: gives up on a connect or request
    // that has been under way longer than --timeout.
    virtual void check_timeout(std::uint64_t now_ns) = 0;

    // One client object for `mode`.
    static std::unique_ptr<BenchClient> create(BenchWorker& worker, unsigned global_index);

protected:
    // Starts the next request now, or arms the timer for its due time.
    void next_request();
    // After an error: next_request() after a short pause, so a dead target
    // costs a few hundred attempts a second per client, not a busy loop.
    void retry_later();
    // Starts a non-blocking TCP connect to the target into `fd` (TCP_NODELAY
    // on). On an immediate failure counts it, schedules a retry and returns
    // false.
    bool start_tcp_connect(UniqueFd& fd, std::uint64_t now_ns);
    // Does the work of one request; intended_ns_ holds its due time.
    virtual void begin_request() = 0;

    // Fills `buffer` (size bytes) with this client's request pattern; the
    // first min(8, size) bytes are then overwritten by stamp_sequence().
    void fill_pattern(std::byte* buffer, std::size_t size) const noexcept;
    // Writes `sequence` into the first min(8, size) bytes, so a reply to an
    // earlier request (or another client's) is told apart from the current one.
    static void stamp_sequence(std::byte* buffer, std::size_t size, std::uint64_t sequence) noexcept;

    BenchWorker& worker_;
    const unsigned global_index_;
    std::uint64_t intended_ns_ = 0;  // due time of the current request

private:
    void on_timer();

    TimerWatcher timer_;
    bool retrying_ = false;
    const bool paced_;
    std::uint64_t first_due_ns_ = 0;
    double interval_ns_ = 0;
    std::uint64_t slot_ = 0;
};

} // namespace sluice::tools
