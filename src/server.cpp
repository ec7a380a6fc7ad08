#include "sluice/server.h"

#include "sluice/cpu_affinity.h"
#include "sluice/listener_factory.h"
#include "sluice/log.h"
#include "sluice/reload.h"
#include "sluice/sd_notify.h"
#include "sluice/socket.h"

#include <algorithm>
#include <csignal>
#include <fmt/ranges.h>
#include <limits>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>

namespace sluice {

namespace {

// Checks how many sessions remain while draining.
constexpr double kDrainPollInterval = 0.05;

sigset_t control_signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

} // namespace

unsigned effective_workers(int configured) noexcept
{
    if (configured > 0)
        return static_cast<unsigned>(configured);
    unsigned cores = std::thread::hardware_concurrency();
    return cores > 0 ? cores : 1;
}

std::int64_t effective_max_sessions(int configured, std::int64_t fd_limit, unsigned workers,
                                    std::size_t idle_pipes_per_worker) noexcept
{
    if (configured > 0)
        return configured;
    // An idle session holds two sockets; pipes are borrowed only while bytes
    // are in flight, and a direction that cannot get one copies instead, so
    // pipes do not count per session. Kept aside: the pipes the workers' pools
    // may keep idle, and room for listeners, probes, admin clients and logs.
    const auto pooled_pipes = static_cast<std::int64_t>(workers * idle_pipes_per_worker) * 2;
    std::int64_t sessions = (fd_limit - kReservedDescriptors - pooled_pipes) / 2;
    return sessions > 1 ? sessions : 1;
}

Server::Server(Config config) : initial_config_(std::move(config)), shared_(std::make_unique<SharedState>())
{
    signal_io_.bind<Server, &Server::on_signal>(control_loop_, this, -1);
    drain_timer_.bind<Server, &Server::on_drain_tick>(control_loop_, this);
    retire_timer_.bind<Server, &Server::on_retire_tick>(control_loop_, this);
    service_timer_.bind<Server, &Server::on_service_tick>(control_loop_, this);
    table_changed_.bind<Server, &Server::refresh_ip_hash>(control_loop_, this);
    table_changed_.start();
    ip_hash_expiry_.bind<Server, &Server::refresh_ip_hash>(control_loop_, this);
    // Set before any other thread exists; every later change wakes the loop.
    shared_->table.set_change_listener([this] { table_changed_.send(); });
    process_.started_ms = monotonic_ms();
}

Server::~Server()
{
    for (auto& worker : workers_) {
        worker->shutdown();
        worker->join();
    }
    // No thread changes the table any more (the prober and the admin stopped
    // in run()); the watcher it wakes goes before the table does.
    shared_->table.set_change_listener(nullptr);
}

bool Server::open_listener_sockets(const ListenerConfig& listener, SocketAddress& bound,
                                   std::vector<std::vector<UniqueFd>>& per_worker)
{
    SocketAddress address = listener.listen;
    std::vector<UniqueFd> opened;
    for (std::size_t w = 0; w < per_worker.size(); ++w) {
        Result<UniqueFd> sock = open_listener_socket(listener, address, runtime_->config.global.backlog);
        if (!sock) {
            log::error("listener {}: cannot listen on {}: {}", listener.name, address.to_string(),
                       describe(sock.error()));
            return false;
        }
        // Port 0: the first socket picks a free port, the others join it.
        if (address.port() == 0)
            address = local_address(sock.value().get());
        opened.push_back(std::move(sock.value()));
    }
    for (std::size_t w = 0; w < per_worker.size(); ++w)
        per_worker[w].push_back(std::move(opened[w]));
    bound = address;
    log::info("listener {} listening on {} ({}, pool {})", listener.name, address.to_string(),
              to_string(listener.protocol), listener.pool);
    return true;
}

bool Server::open_listeners(std::vector<std::vector<UniqueFd>>& per_worker)
{
    for (std::size_t i = 0; i < runtime_->config.listeners.size(); ++i)
        if (!open_listener_sockets(runtime_->config.listeners[i], runtime_->listeners[i].bound, per_worker))
            return false;
    return true;
}

void Server::bind_workers(const std::vector<int>& cpus, const std::vector<int>& allowed)
{
    if (cpus == worker_cpus_)
        return;
    for (std::size_t w = 0; w < workers_.size(); ++w)
        if (cpus[w] != worker_cpus_[w])
            workers_[w]->bind_cpu(cpus[w], allowed);
    worker_cpus_ = cpus;
    if (cpus.front() == kAnyCpu)
        log::info("workers run on any CPU");
    else
        log::info("workers bound to CPUs {} (worker 0 first)", fmt::join(cpus, ","));
}

int Server::run()
{
    // Signals are read from a signalfd on this thread; block them here so
    // every worker thread inherits the mask and none is interrupted.
    sigset_t signals = control_signals();
    ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);  // splice(2) into a closed socket raises it
    signal_fd_.reset(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signal_fd_) {
        log::error("cannot create signalfd: {}", describe(classify_errno(errno)));
        return 1;
    }
    signal_io_.bind<Server, &Server::on_signal>(control_loop_, this, signal_fd_.get());

    std::int64_t fd_limit = raise_fd_limit();

    std::string error;
    base_config_ = std::move(initial_config_);
    if (!resolver_.configure(base_config_.global, questions_of(base_config_), &error)) {
        log::error("{}", error);
        return 1;
    }
    runtime_ = build_runtime(apply_answers(base_config_, resolver_.answers()), shared_->table, nullptr, &error);
    if (!runtime_) {
        log::error("{}", error);
        return 1;
    }
    const GlobalConfig& global = runtime_->config.global;
    unsigned worker_count = effective_workers(global.workers);
    std::vector<std::string> errors;
    if (!attach_operations(*runtime_, nullptr, worker_count, &errors)) {
        for (const auto& e : errors)
            log::error("{}", e);
        return 1;
    }

    const std::vector<int> allowed = allowed_cpus();
    std::optional<std::vector<int>> cpus = plan_worker_cpus(global.cpu_affinity, worker_count, allowed, &error);
    if (!cpus) {
        log::error("{}", error);
        return 1;
    }

    std::vector<std::vector<UniqueFd>> listener_fds(worker_count);
    if (!open_listeners(listener_fds))
        return 1;
    if (!admin_.open(runtime_->config.admin, &error)) {
        log::error("{}", error);
        return 1;
    }

    prober_.start(runtime_);
    WorkerOptions options;
    options.pipe_size = global.pipe_size;
    options.splice = global.splice;
    shared_->max_sessions =
        effective_max_sessions(global.max_connections, fd_limit, worker_count, options.max_idle_pipes);
    for (unsigned i = 0; i < worker_count; ++i) {
        workers_.push_back(std::make_unique<Worker>(i, *shared_, options));
        workers_.back()->start(runtime_, std::move(listener_fds[i]));
    }
    worker_cpus_.assign(worker_count, kAnyCpu);
    bind_workers(*cpus, allowed);
    std::vector<Worker*> workers;
    for (auto& worker : workers_)
        workers.push_back(worker.get());
    admin_.start(runtime_, std::move(workers));
    watch_service();
    process_.generation.store(runtime_->generation, std::memory_order_relaxed);
    generations_.push_back(runtime_);
    log::info("sluice started: {} workers, max {} sessions, {} file descriptors", worker_count,
              shared_->max_sessions, fd_limit);
    sd_notify("READY=1\nSTATUS=accepting connections");

    signal_io_.set_events(EV_READ);
    control_loop_.run();

    for (auto& worker : workers_)
        worker->join();
    admin_.stop();  // before the workers go: it may still hold a request for one
    workers_.clear();
    log::info("sluice stopped");
    return 0;
}

void Server::watch_service()
{
    service_watch_.adopt(*runtime_, monotonic_ms());
    const bool any_queue = std::any_of(runtime_->pools.begin(), runtime_->pools.end(),
                                       [](const PoolRuntime& pool) { return pool.queue != nullptr; });
    if (!service_watch_.needed() && !any_queue)
        service_timer_.stop();
    else if (!service_timer_.active())
        service_timer_.start(ServiceWatch::kScanInterval, ServiceWatch::kScanInterval);
}

void Server::on_service_tick()
{
    if (draining_)
        return;  // every session ends by the drain's own rules
    std::vector<Worker*> workers;
    for (auto& worker : workers_)
        workers.push_back(worker.get());
    for (ServiceWatch::Action& action : service_watch_.scan(monotonic_ms())) {
        end_sessions_on_workers(workers, std::move(action.backends), action.cause, control_loop_,
                                [why = std::move(action.why)](std::size_t ended) {
                                    log::warning("{}: {} session{} closed", why, ended, ended == 1 ? "" : "s");
                                });
    }
    // Capacity that appeared without a session ending goes to waiting clients.
    const std::int64_t now_ms = monotonic_ms();
    for (const PoolRuntime& pool : runtime_->pools) {
        if (!pool.queue || !pool.queue->has_waiters()) [[likely]]
            continue;
        pool.queue->offer_free_slots(shared_->table, pool.primaries, now_ms);
        // Backups only while no primary is usable, as the balancer picks them.
        const bool primary_usable = std::any_of(pool.primaries.begin(), pool.primaries.end(),
                                                [&](BackendId id) { return shared_->table.usable(id, now_ms); });
        if (!primary_usable)
            pool.queue->offer_free_slots(shared_->table, pool.backups, now_ms);
    }
}

void Server::refresh_ip_hash()
{
    if (!runtime_)
        return;
    const std::int64_t now_ms = monotonic_ms();
    std::int64_t next_expiry_ms = std::numeric_limits<std::int64_t>::max();
    for (const PoolRuntime& pool : runtime_->pools) {
        for (IpHashLookup* lookup : {pool.primary_lookup.get(), pool.backup_lookup.get()}) {
            if (!lookup)
                continue;
            if (lookup->refresh(now_ms))
                log::debug("pool {}: ip_hash {} table rebuilt: {} of {} backends in it, {:.1f} ms",
                           pool.config->name, lookup == pool.primary_lookup.get() ? "primaries" : "backups",
                           lookup->latest()->members_in_table, lookup->members().size(), lookup->last_build_ms());
            next_expiry_ms = std::min(next_expiry_ms, lookup->next_expiry_ms());
        }
    }
    if (next_expiry_ms == std::numeric_limits<std::int64_t>::max())
        ip_hash_expiry_.stop();
    else  // 1 ms past it, in case the loop's clock runs a little early
        ip_hash_expiry_.start(static_cast<double>(next_expiry_ms - now_ms + 1) / 1000.0);
}

void Server::on_signal(int)
{
    signalfd_siginfo info{};
    while (::read(signal_fd_.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        switch (info.ssi_signo) {
        case SIGHUP:
            reload();
            break;
        case SIGTERM:
        case SIGINT:
            if (draining_) {
                log::info("second stop signal: exiting now");
                finish();
                return;
            }
            begin_drain();
            break;
        default:
            break;
        }
    }
}

void Server::begin_drain()
{
    draining_ = true;
    admin_.note_draining();
    sd_notify("STOPPING=1");
    std::size_t sessions = 0;
    for (auto& worker : workers_) {
        worker->stop_accepting();
        sessions += worker->session_count();
    }
    Duration timeout = runtime_->config.global.drain_timeout;
    log::info("stopping: listeners closed, draining {} sessions for up to {}ms", sessions, timeout.count());
    control_loop_.update_now();
    drain_deadline_ = control_loop_.now() + static_cast<double>(timeout.count()) / 1000.0;
    on_drain_tick();
}

void Server::on_drain_tick()
{
    std::size_t sessions = 0;
    for (auto& worker : workers_)
        sessions += worker->session_count();
    if (sessions == 0) {
        finish();
        return;
    }
    if (control_loop_.now() >= drain_deadline_) {
        log::info("drain timeout: closing {} remaining sessions", sessions);
        finish();
        return;
    }
    drain_timer_.start(kDrainPollInterval);
}

void Server::finish()
{
    drain_timer_.stop();
    retire_timer_.stop();
    service_timer_.stop();
    signal_io_.stop();
    for (auto& worker : workers_)
        worker->shutdown();
    prober_.stop();
    control_loop_.break_loop();
}

} // namespace sluice
