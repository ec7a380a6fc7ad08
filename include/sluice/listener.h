// TcpListener: one worker's SO_REUSEPORT socket for one TCP listener.
//
// Accepts in bounded batches so one busy listener cannot starve the loop, and
// survives EMFILE/ENFILE without spinning: it gives up a reserve descriptor,
// accepts the pending connection and closes it at once, then takes the reserve
// back (the muduo Acceptor trick). Loop thread only.
#pragma once

#include "sluice/event_loop.h"
#include "sluice/fd.h"

#include <atomic>
#include <cstdint>

namespace sluice {

class Worker;
struct ListenerConfig;

// Counters of one listener on one worker: written by that worker only, read by
// the admin/metrics thread (hence relaxed atomics).
struct ListenerStats {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> rejected{0};  // max_connections or EMFILE
};

class TcpListener {
public:
    static constexpr int kAcceptBatch = 64;
    // How long accepting pauses when even the reserve descriptor is gone.
    static constexpr double kPauseAtFdLimit = 0.1;

    TcpListener(Worker& worker, UniqueFd fd, const ListenerConfig& config);
    void start();
    void stop();

    const ListenerConfig& config() const noexcept { return *config_; }
    void set_config(const ListenerConfig& config) noexcept { config_ = &config; }
    const ListenerStats& stats() const noexcept { return stats_; }

private:
    void on_readable(int revents);
    // Returns false when the listener had to pause (no reserve descriptor).
    bool shed_one_connection();
    void on_resume();

    Worker& worker_;
    UniqueFd fd_;
    IoWatcher io_;
    TimerWatcher resume_timer_;  // restarts accepting after a pause at EMFILE
    const ListenerConfig* config_;
    ListenerStats stats_;
};

} // namespace sluice
