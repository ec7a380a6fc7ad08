// Worker: one thread, one libev loop, its own listener sockets (SO_REUSEPORT),
// its sessions, its balancers and its pipe pool.
//
// Sessions never move between workers. The control thread talks to a worker
// only through post() (EventLoop) and the atomics marked as such below.
#pragma once

#include "sluice/backend_table.h"
#include "sluice/balancer.h"
#include "sluice/event_loop.h"
#include "sluice/pipe_pool.h"
#include "sluice/runtime.h"
#include "sluice/session.h"

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

// What every worker shares: the backend table and the global session limit.
struct SharedState {
    BackendTable table;
    // Sessions open across all workers; max_connections caps it.
    std::atomic<std::int64_t> sessions{0};
    std::int64_t max_sessions = 0;
};

// This worker's view of one pool in one generation: its own balancer instance.
struct WorkerPool {
    WorkerPool(const PoolRuntime& runtime, const BackendTable& table)
        : runtime(&runtime)
        , balancer(runtime.config->balance, runtime.primaries, runtime.backups, table)
    {
    }
    const PoolRuntime* runtime;
    PoolBalancer balancer;
};

// A generation as one worker uses it. Sessions keep the generation they
// started under alive (shared_ptr), so a reload never pulls a pool from under
// a connecting session.
struct WorkerGeneration {
    std::shared_ptr<const Runtime> runtime;
    std::vector<std::unique_ptr<WorkerPool>> pools;  // parallel to runtime->pools
    WorkerPool* find_pool(std::string_view name) noexcept;
};

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

struct WorkerOptions {
    std::size_t pipe_size = 1u << 20;
    std::size_t max_idle_pipes = 64;
    bool splice = true;  // false: sessions copy through buffers
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
    std::size_t session_count() const noexcept { return sessions_.session_count(); }
    // Any thread: CPU time the worker's thread has used (EventLoop::cpu_seconds).
    double cpu_seconds() const noexcept { return loop_.cpu_seconds(); }
    unsigned index() const noexcept { return index_; }

    // --- loop thread only ---
    EventLoop& loop() noexcept { return loop_; }
    SharedState& shared() noexcept { return shared_; }
    BackendTable& table() noexcept { return shared_.table; }
    PipePool& pipes() noexcept { return pipes_; }
    bool splice_enabled() const noexcept { return splice_; }
    BufferPool& buffers() noexcept { return buffers_; }
    // The reserve descriptor that TcpListener gives up to shed a connection at
    // EMFILE (see listener.cpp).
    UniqueFd& reserve_fd() noexcept { return reserve_fd_; }
    const std::shared_ptr<WorkerGeneration>& generation() const noexcept { return generation_; }

    // Every live session of this worker, TCP and UDP.
    SessionRegistry& sessions() noexcept { return sessions_; }

private:
    void run();
    void adopt(std::shared_ptr<const Runtime> runtime, std::vector<ListenerHandoff> listeners);
    std::shared_ptr<WorkerGeneration> make_generation(std::shared_ptr<const Runtime> runtime);

    unsigned index_;
    SharedState& shared_;
    EventLoop loop_;
    PipePool pipes_;
    BufferPool buffers_;
    UniqueFd reserve_fd_;
    bool splice_;
    std::shared_ptr<WorkerGeneration> generation_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    SessionRegistry sessions_;
    std::thread thread_;
};

} // namespace sluice
