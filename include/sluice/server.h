// Server: the process. Owns the shared backend table, the workers and the
// control loop (signals, drain) on the main thread.
#pragma once

#include "sluice/admin.h"
#include "sluice/config.h"
#include "sluice/event_loop.h"
#include "sluice/fd.h"
#include "sluice/health_prober.h"
#include "sluice/name_resolver.h"
#include "sluice/runtime.h"
#include "sluice/service_watch.h"
#include "sluice/stats.h"
#include "sluice/worker.h"

#include <memory>
#include <vector>

namespace sluice {

class Server {
public:
    explicit Server(Config config);
    ~Server();

    // Binds the listeners, starts the workers and runs the control loop until
    // a stop. Returns the process exit code (0 after a clean stop, 1 when
    // startup failed). Call from the main thread.
    int run();

    // Control thread: re-reads the config file and, when it is valid, publishes
    // it (server_reload.cpp). An invalid file changes nothing.
    ReloadOutcome reload();

private:
    // Backend slots a reload removed, freed once no generation up to
    // `generation` is alive and no session uses them.
    struct RetiredBackends {
        std::uint64_t generation;
        std::vector<BackendId> ids;
    };

    bool open_listeners(std::vector<std::vector<UniqueFd>>& per_worker);
    // One socket per worker for `listener`; `bound` comes back with port 0
    // resolved. Logs and returns false on failure (nothing stays open).
    bool open_listener_sockets(const ListenerConfig& listener, SocketAddress& bound,
                               std::vector<std::vector<UniqueFd>>& per_worker);
    // Binds each worker whose CPU in `cpus` (one per worker, cpu_affinity.h)
    // differs from the one it has, and logs the new layout. `allowed` is the
    // set the plan was made from.
    void bind_workers(const std::vector<int>& cpus, const std::vector<int>& allowed);
    void on_retire_tick();
    // Control thread: makes `next` the running generation (workers, prober,
    // admin, retired slots). `handoffs`: each worker's listeners (reload.h).
    void publish(std::shared_ptr<Runtime> next, std::vector<std::vector<ListenerHandoff>> handoffs);
    // Control thread: the resolver's answers changed; publishes them.
    void on_names_changed();
    // Control thread: rebuilds the current generation's ip_hash lookups whose
    // usable set changed, and arms ip_hash_expiry_ for the next passive
    // mark-down to run out. Woken by table_changed_ (any thread changed a
    // backend's health, admin state or weight), so workers never build.
    void refresh_ip_hash();
    // Watches the generation now in runtime_ for on_down/on_up edges.
    void watch_service();
    void on_service_tick();
    void on_signal(int revents);
    void begin_drain();
    void on_drain_tick();
    void finish();
    // Admin thread: runs reload() on the control thread, then `reply`.
    void request_reload(std::function<void(ReloadOutcome)> reply);

    Config initial_config_;
    std::unique_ptr<SharedState> shared_;
    HealthProber prober_{shared_->table};  // after shared_: probes its table
    std::shared_ptr<Runtime> runtime_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<int> worker_cpus_;  // the CPU each worker is bound to, or kAnyCpu
    ProcessStats process_;
    EventLoop control_loop_;
    // The file's configuration (names unresolved, nothing discovered); each
    // generation is it plus the resolver's answers (apply_answers).
    Config base_config_;
    NameResolver resolver_{control_loop_, [this] { on_names_changed(); }};
    AdminServer admin_{shared_->table, process_, &prober_.reports(),
                       [this](auto reply) { request_reload(std::move(reply)); }};
    // Every generation published, to know when an old one is gone.
    std::vector<std::weak_ptr<const Runtime>> generations_;
    std::vector<RetiredBackends> retired_;
    TimerWatcher retire_timer_;
    ServiceWatch service_watch_{shared_->table};
    TimerWatcher service_timer_;
    AsyncWatcher table_changed_;   // BackendTable's change listener sends it
    TimerWatcher ip_hash_expiry_;  // the next passive mark-down an ip_hash table must drop
    UniqueFd signal_fd_;
    IoWatcher signal_io_;
    TimerWatcher drain_timer_;
    bool draining_ = false;
    ev_tstamp drain_deadline_ = 0;
};

// The number of worker threads `workers = N` means on this machine.
unsigned effective_workers(int configured) noexcept;

// Descriptors the default session cap leaves for everything but sessions.
inline constexpr std::int64_t kReservedDescriptors = 64;

// max_connections, or the default derived from the descriptor limit
// `fd_limit`: two sockets per session, after what `workers` pools of
// `idle_pipes_per_worker` idle pipes and kReservedDescriptors may hold.
std::int64_t effective_max_sessions(int configured, std::int64_t fd_limit, unsigned workers,
                                    std::size_t idle_pipes_per_worker) noexcept;


} // namespace sluice
