// TcpListener: accepts TCP clients on one worker and starts their sessions.
#pragma once

#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/listener.h"

namespace sluice {

// TCP: accepts in bounded batches so one busy listener cannot starve the loop,
// and survives EMFILE/ENFILE without spinning: it gives up a reserve
// descriptor, accepts the pending connection and closes it at once, then takes
// the reserve back (the muduo Acceptor trick). Loop thread only.
class TcpListener final : public Listener {
public:
    static constexpr int kAcceptBatch = 64;
    // How long accepting pauses when even the reserve descriptor is gone.
    static constexpr double kPauseAtFdLimit = 0.1;

    TcpListener(WorkerContext& worker, UniqueFd fd, const ListenerConfig& config);
    void start() override;
    void stop() override;

private:
    void on_readable(int revents);
    // Returns false when the listener had to pause (no reserve descriptor).
    bool shed_one_connection();
    void on_resume();

    WorkerContext& worker_;
    UniqueFd fd_;
    IoWatcher io_;
    TimerWatcher resume_timer_;  // restarts accepting after a pause at EMFILE
};

} // namespace sluice
