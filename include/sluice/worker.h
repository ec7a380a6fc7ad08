// Worker: one thread, one libev loop, its own listener sockets (SO_REUSEPORT),
// its sessions, its balancers and its pipe pool.
//
// Sessions never move between workers. The control thread talks to a worker
// only through post() (EventLoop) and the atomics marked as such below.
#pragma once

#include "sluice/worker_context.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sluice {

class Listener;

// One listener of a new generation as a worker receives it on reload: the
// listener it already runs for `previous` (a config of its current
// generation), kept with its socket, or a socket the control thread opened.
struct ListenerHandoff {
    const ListenerConfig* previous = nullptr;
    UniqueFd fd;
};

// One session as `show sessions` prints it.
struct SessionInfo {
    unsigned worker = 0;
    std::string listener;
    std::string protocol;  // tcp, udp
    std::string client;
    std::string backend;   // "pool/name" or "-"
    double age_seconds = 0;
    std::uint64_t bytes_in = 0;   // client -> backend
    std::uint64_t bytes_out = 0;  // backend -> client
    std::string state;     // connecting, established, client-half-closed, backend-half-closed, closing; udp: active
};


class Worker {
public:
    Worker(unsigned index, SharedState& shared, const WorkerOptions& options);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Control thread, before start(): adopts `runtime` and one socket per
    // listener of its config (same order as config.listeners).
    void start(std::shared_ptr<const Runtime> runtime, std::vector<UniqueFd> listener_fds);

    // Any thread: adopts a reloaded generation. `listeners` is parallel to
    // runtime->config.listeners. Kept listeners switch to their new config,
    // new ones start, the rest stop; sessions keep the generation they started
    // under. `done` runs on the worker's thread afterwards.
    void reload(std::shared_ptr<const Runtime> runtime, std::vector<ListenerHandoff> listeners,
                std::function<void()> done);

    // Loop thread: one SessionInfo per open session.
    std::vector<SessionInfo> describe_sessions() const;

    // Loop thread: ends this worker's sessions of each of `backends`, both
    // sides at once; returns how many ended.
    std::size_t end_backend_sessions(const std::vector<BackendId>& backends, EndCause cause);

    // Any thread: the worker's thread binds itself to `cpu`, or to all of
    // `allowed` for kAnyCpu (cpu_affinity.h). A failure is logged; the worker
    // keeps running where it was.
    void bind_cpu(int cpu, std::vector<int> allowed);

    // Any thread: stop accepting (close this worker's listener sockets).
    void stop_accepting();
    // Any thread: end every session and stop the loop.
    void shutdown();
    // Control thread: waits for the thread to end.
    void join();

    // Any thread: sessions (TCP and UDP) currently open on this worker.
    std::size_t session_count() const noexcept { return context_.sessions().session_count(); }
    // Any thread: CPU time the worker's thread has used (EventLoop::cpu_seconds).
    double cpu_seconds() const noexcept { return context_.loop().cpu_seconds(); }
    unsigned index() const noexcept { return context_.index(); }
    // Any thread: this worker's per-backend counts, for the admin thread to sum.
    const BackendCounters& backend_counters() const noexcept { return context_.backend_counters(); }
    // Any thread: for post(); everything else on it is loop-thread only.
    EventLoop& loop() noexcept { return context_.loop(); }

private:
    void run();
    void adopt(std::shared_ptr<const Runtime> runtime, std::vector<ListenerHandoff> listeners);
    std::shared_ptr<WorkerRuntime> make_worker_runtime(std::shared_ptr<const Runtime> runtime);

    WorkerContext context_;
    // After context_: listeners are destroyed first, while the loop and the
    // registry they end their flows through still exist.
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::thread thread_;
};

// Any thread: ends the sessions of `backends` on every worker, each on its
// own loop, then runs `done(total ended)` on `reply_loop`. (Failover:
// on_down/on_up; the admin command shutdown sessions.)
void end_sessions_on_workers(const std::vector<Worker*>& workers, std::vector<BackendId> backends, EndCause cause,
                             EventLoop& reply_loop, std::function<void(std::size_t)> done);

} // namespace sluice
