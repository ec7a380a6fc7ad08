// WorkerContext: what a worker gives the listeners and sessions that run on
// its loop, and nothing else: the loop, the shared backend table and session
// limit, the pipe and buffer pools, the session registry, the reserve
// descriptor for EMFILE and the current generation. Listeners and sessions
// depend on this, never on Worker itself (worker.h), so the thread and
// reload machinery can change without touching the data path.
//
// Loop thread only, except where a member says otherwise.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/pipe_pool.h"
#include "sluice/session.h"
#include "sluice/worker_runtime.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace sluice {

// What every worker shares: the backend table and the global session limit.
struct SharedState {
    BackendTable table;
    // Sessions open across all workers; max_connections caps it.
    std::atomic<std::int64_t> sessions{0};
    std::int64_t max_sessions = 0;
};

struct WorkerOptions {
    std::size_t pipe_size = 1u << 20;
    std::size_t max_idle_pipes = 64;
    bool splice = true;  // false: sessions copy through buffers
};

class WorkerContext {
public:
    WorkerContext(unsigned index, SharedState& shared, const WorkerOptions& options);
    WorkerContext(const WorkerContext&) = delete;
    WorkerContext& operator=(const WorkerContext&) = delete;

    unsigned index() const noexcept { return index_; }
    EventLoop& loop() noexcept { return loop_; }
    const EventLoop& loop() const noexcept { return loop_; }
    SharedState& shared() noexcept { return shared_; }
    BackendTable& table() noexcept { return shared_.table; }
    // Loop thread only (asserted in debug builds), unless marked otherwise.
    PipePool& pipes() noexcept
    {
        loop_.assert_loop_thread();
        return pipes_;
    }
    BufferPool& buffers() noexcept
    {
        loop_.assert_loop_thread();
        return buffers_;
    }
    bool splice_enabled() const noexcept { return splice_; }
    // The reserve descriptor a listener gives up to shed a connection at
    // EMFILE (see listener.cpp).
    UniqueFd& reserve_fd() noexcept
    {
        loop_.assert_loop_thread();
        return reserve_fd_;
    }
    // The configuration generation new sessions start under.
    const std::shared_ptr<WorkerRuntime>& runtime() const noexcept { return worker_runtime_; }
    void set_runtime(std::shared_ptr<WorkerRuntime> generation) noexcept
    {
        loop_.assert_loop_thread();
        worker_runtime_ = std::move(generation);
    }
    // This worker's sessions and bytes per backend (summed by the admin thread).
    BackendCounters& backend_counters() noexcept
    {
        loop_.assert_loop_thread();
        return backend_counters_;
    }
    // Any thread (the admin thread sums them).
    const BackendCounters& backend_counters() const noexcept { return backend_counters_; }
    // Every live session of this worker, TCP and UDP.
    SessionRegistry& sessions() noexcept
    {
        loop_.assert_loop_thread();
        return sessions_;
    }
    // Any thread: session_count() only.
    const SessionRegistry& sessions() const noexcept { return sessions_; }

private:
    unsigned index_;
    SharedState& shared_;
    EventLoop loop_;
    PipePool pipes_;
    BufferPool buffers_;
    UniqueFd reserve_fd_;
    bool splice_;
    BackendCounters backend_counters_;
    std::shared_ptr<WorkerRuntime> worker_runtime_;
    SessionRegistry sessions_;  // after loop_: it ends its sessions before the loop goes
};

} // namespace sluice
