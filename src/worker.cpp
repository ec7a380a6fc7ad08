#include "sluice/worker.h"

#include "sluice/access_log.h"
#include "sluice/config.h"
#include "sluice/cpu_affinity.h"
#include "sluice/errors.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/tcp_session.h"

#include <fcntl.h>
#include <pthread.h>

namespace sluice {

WorkerPool* WorkerGeneration::find_pool(std::string_view name) noexcept
{
    for (auto& pool : pools)
        if (pool->runtime->config->name == name)
            return pool.get();
    return nullptr;
}

Worker::Worker(unsigned index, SharedState& shared, const WorkerOptions& options)
    : index_(index)
    , shared_(shared)
    , pipes_(options.pipe_size, options.max_idle_pipes)
    , buffers_(16)
    , reserve_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC))
    , splice_(options.splice)
{
}

Worker::~Worker()
{
    if (thread_.joinable()) {
        shutdown();
        join();
    }
}

std::shared_ptr<WorkerGeneration> Worker::make_generation(std::shared_ptr<const Runtime> runtime)
{
    auto generation = std::make_shared<WorkerGeneration>();
    for (const PoolRuntime& pool : runtime->pools)
        generation->pools.push_back(std::make_unique<WorkerPool>(pool, shared_.table));
    generation->runtime = std::move(runtime);
    return generation;
}

void Worker::start(std::shared_ptr<const Runtime> runtime, std::vector<UniqueFd> listener_fds)
{
    generation_ = make_generation(std::move(runtime));
    const auto& configs = generation_->runtime->config.listeners;
    for (std::size_t i = 0; i < configs.size(); ++i)
        if (auto listener = make_listener(*this, std::move(listener_fds.at(i)), configs[i]))
            listeners_.push_back(std::move(listener));
    thread_ = std::thread([this] { run(); });
    // "sluice-w0", ...: tells the workers apart in top -H, perf and /proc.
    std::string name = fmt::format("sluice-w{}", index_);
    ::pthread_setname_np(thread_.native_handle(), name.c_str());
}

void Worker::run()
{
    for (auto& listener : listeners_)
        listener->start();
    loop_.run();
}

void Worker::reload(std::shared_ptr<const Runtime> runtime, std::vector<ListenerHandoff> listeners,
                    std::function<void()> done)
{
    // post() takes a copyable task; the sockets travel in a shared holder.
    auto handoffs = std::make_shared<std::vector<ListenerHandoff>>(std::move(listeners));
    loop_.post([this, runtime = std::move(runtime), handoffs, done = std::move(done)]() mutable {
        adopt(std::move(runtime), std::move(*handoffs));
        if (done)
            done();
    });
}

// Loop thread. The previous generation stays alive until the end (the
// handoffs point into its config) and afterwards for as long as a session
// that started under it runs.
void Worker::adopt(std::shared_ptr<const Runtime> runtime, std::vector<ListenerHandoff> handoffs)
{
    std::shared_ptr<WorkerGeneration> previous = std::move(generation_);
    generation_ = make_generation(std::move(runtime));
    const auto& configs = generation_->runtime->config.listeners;
    std::vector<std::unique_ptr<Listener>> next;
    for (std::size_t i = 0; i < configs.size() && i < handoffs.size(); ++i) {
        ListenerHandoff& handoff = handoffs[i];
        if (handoff.previous) {
            for (auto& running : listeners_) {
                if (running && &running->config() == handoff.previous) {
                    running->set_config(configs[i]);  // same socket: accepting never pauses
                    next.push_back(std::move(running));
                    break;
                }
            }
            continue;
        }
        if (auto listener = make_listener(*this, std::move(handoff.fd), configs[i])) {
            listener->start();
            next.push_back(std::move(listener));
        }
    }
    for (auto& removed : listeners_)
        if (removed)
            removed->stop();
    listeners_ = std::move(next);
}

std::vector<SessionInfo> Worker::describe_sessions() const
{
    std::vector<SessionInfo> out;
    const ev_tstamp now = loop_.now();
    for (const TcpSession* s = sessions_; s; s = s->next) {
        SessionInfo info;
        info.worker = index_;
        info.listener = s->listener().name;
        info.client = s->client_address().to_string();
        info.backend = "-";
        if (auto id = s->backend())
            if (const PoolRuntime* pool = s->generation().runtime->find_pool(s->listener().pool))
                info.backend = pool->label(*id);
        info.age_seconds = now - s->started_at();
        info.bytes_in = s->bytes_from_client();
        info.bytes_out = s->bytes_from_backend();
        if (s->state() == TcpSession::State::Connecting)
            info.state = "connecting";
        else if (s->client_half_closed() && s->backend_half_closed())
            info.state = "closing";
        else if (s->client_half_closed())
            info.state = "client-half-closed";
        else if (s->backend_half_closed())
            info.state = "backend-half-closed";
        else
            info.state = "established";
        out.push_back(std::move(info));
    }
    return out;
}

void Worker::record_session_end(const TcpSession& session, CloseReason reason) noexcept
{
    const Runtime& runtime = *session.generation().runtime;
    const ListenerRuntime* listener = runtime.find_listener(session.listener());
    if (!listener)
        return;
    if (listener->counters) {
        ListenerStats& stats = listener->counters->worker(index_);
        stats.bytes_in.fetch_add(session.bytes_from_client(), std::memory_order_relaxed);
        stats.bytes_out.fetch_add(session.bytes_from_backend(), std::memory_order_relaxed);
    }
    if (!listener->access_log)
        return;
    try {
        AccessRecord record;
        record.listener = session.listener().name;
        record.client = session.client_address().to_string();
        record.backend = "-";
        if (auto id = session.backend())
            if (const PoolRuntime* pool = runtime.find_pool(session.listener().pool))
                record.backend = pool->label(*id);
        record.duration_ms = static_cast<std::int64_t>((loop_.now() - session.started_at()) * 1000.0);
        record.bytes_in = session.bytes_from_client();
        record.bytes_out = session.bytes_from_backend();
        record.end = to_string(reason);
        listener->access_log->write_line(format_access_line(record));
    } catch (...) {
        // Out of memory: no access line for this session.
    }
}

void Worker::bind_cpu(int cpu, std::vector<int> allowed)
{
    loop_.post([this, cpu, allowed = std::move(allowed)] {
        if (!bind_current_thread(cpu, allowed))
            log::warning("worker {}: cannot bind to CPU {}: {}", index_, cpu, describe(classify_errno(errno)));
    });
}

void Worker::stop_accepting()
{
    loop_.post([this] {
        for (auto& listener : listeners_)
            listener->stop();
    });
}

void Worker::shutdown()
{
    loop_.post([this] {
        for (auto& listener : listeners_)
            listener->stop();
        while (sessions_)
            sessions_->abort(CloseReason::Shutdown);
        loop_.break_loop();
    });
}

void Worker::join()
{
    if (thread_.joinable())
        thread_.join();
}

void Worker::add_session(TcpSession* session) noexcept
{
    session->prev = nullptr;
    session->next = sessions_;
    if (sessions_)
        sessions_->prev = session;
    sessions_ = session;
    session_count_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::remove_session(TcpSession* session) noexcept
{
    if (session->prev)
        session->prev->next = session->next;
    else
        sessions_ = session->next;
    if (session->next)
        session->next->prev = session->prev;
    session_count_.fetch_sub(1, std::memory_order_relaxed);
}

} // namespace sluice
