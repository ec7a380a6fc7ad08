#include "sluice/worker.h"

#include "sluice/config.h"
#include "sluice/cpu_affinity.h"
#include "sluice/errors.h"
#include "sluice/listener.h"
#include "sluice/listener_factory.h"
#include "sluice/log.h"

#include <fcntl.h>
#include <pthread.h>

namespace sluice {

Worker::Worker(unsigned index, SharedState& shared, const WorkerOptions& options) : context_(index, shared, options) {}

Worker::~Worker()
{
    if (thread_.joinable()) {
        shutdown();
        join();
    }
}

std::shared_ptr<WorkerRuntime> Worker::make_worker_runtime(std::shared_ptr<const Runtime> runtime)
{
    auto generation = std::make_shared<WorkerRuntime>();
    for (const PoolRuntime& pool : runtime->pools)
        generation->pools.push_back(std::make_unique<PoolPicker>(pool, context_.table()));
    generation->runtime = std::move(runtime);
    return generation;
}

void Worker::start(std::shared_ptr<const Runtime> runtime, std::vector<UniqueFd> listener_fds)
{
    context_.set_runtime(make_worker_runtime(std::move(runtime)));
    const auto& configs = context_.runtime()->runtime->config.listeners;
    for (std::size_t i = 0; i < configs.size(); ++i)
        if (auto listener = make_listener(context_, std::move(listener_fds.at(i)), configs[i]))
            listeners_.push_back(std::move(listener));
    thread_ = std::thread([this] { run(); });
    // "sluice-w0", ...: tells the workers apart in top -H, perf and /proc.
    std::string name = fmt::format("sluice-w{}", context_.index());
    ::pthread_setname_np(thread_.native_handle(), name.c_str());
}

void Worker::run()
{
    // The listeners start on the loop's first turn: from then on this thread
    // is the loop's (EventLoop::run records it), as their watchers require.
    context_.loop().post([this] {
        for (auto& listener : listeners_)
            listener->start();
    });
    context_.loop().run();
}

void Worker::reload(std::shared_ptr<const Runtime> runtime, std::vector<ListenerHandoff> listeners,
                    std::function<void()> done)
{
    // post() takes a copyable task; the sockets travel in a shared holder.
    auto handoffs = std::make_shared<std::vector<ListenerHandoff>>(std::move(listeners));
    context_.loop().post([this, runtime = std::move(runtime), handoffs, done = std::move(done)]() mutable {
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
    std::shared_ptr<WorkerRuntime> previous = context_.runtime();
    context_.set_runtime(make_worker_runtime(std::move(runtime)));
    const auto& configs = context_.runtime()->runtime->config.listeners;
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
        if (auto listener = make_listener(context_, std::move(handoff.fd), configs[i])) {
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
    context_.loop().assert_loop_thread();
    std::vector<SessionInfo> out;
    const ev_tstamp now = context_.loop().now();
    context_.sessions().for_each([&](const Session& s) {
        SessionInfo info;
        info.worker = context_.index();
        info.listener = s.listener().name;
        info.protocol = s.protocol() == Protocol::Udp ? "udp" : "tcp";
        info.client = s.client().to_string();
        info.backend = "-";
        if (auto id = s.backend())
            if (const PoolRuntime* pool = s.runtime().runtime->find_pool(s.listener().pool))
                info.backend = pool->label(*id);
        info.age_seconds = now - s.started_at();
        SessionCounts counts = s.counts();
        info.bytes_in = counts.bytes_in;
        info.bytes_out = counts.bytes_out;
        info.state = s.state();
        out.push_back(std::move(info));
    });
    return out;
}

std::size_t Worker::end_backend_sessions(const std::vector<BackendId>& backends, EndCause cause)
{
    context_.loop().assert_loop_thread();
    std::size_t ended = 0;
    for (BackendId id : backends)
        ended += context_.sessions().end_backend_sessions(id, cause);
    return ended;
}

void end_sessions_on_workers(const std::vector<Worker*>& workers, std::vector<BackendId> backends, EndCause cause,
                             EventLoop& reply_loop, std::function<void(std::size_t)> done)
{
    if (workers.empty()) {
        reply_loop.post([done = std::move(done)] { done(0); });
        return;
    }
    struct Gather {
        std::size_t remaining;
        std::size_t ended = 0;
        std::vector<BackendId> backends;
        std::function<void(std::size_t)> done;
    };
    auto gather = std::make_shared<Gather>(Gather{workers.size(), 0, std::move(backends), std::move(done)});
    for (Worker* worker : workers) {
        worker->loop().post([worker, gather, cause, &reply_loop] {
            std::size_t ended = worker->end_backend_sessions(gather->backends, cause);
            reply_loop.post([gather, ended] {
                gather->ended += ended;
                if (--gather->remaining == 0)
                    gather->done(gather->ended);
            });
        });
    }
}

void Worker::bind_cpu(int cpu, std::vector<int> allowed)
{
    context_.loop().post([this, cpu, allowed = std::move(allowed)] {
        if (!bind_current_thread(cpu, allowed))
            log::warning("worker {}: cannot bind to CPU {}: {}", context_.index(), cpu, describe(classify_errno(errno)));
    });
}

void Worker::stop_accepting()
{
    context_.loop().post([this] {
        for (auto& listener : listeners_)
            listener->stop();
    });
}

void Worker::shutdown()
{
    context_.loop().post([this] {
        for (auto& listener : listeners_)
            listener->stop();
        context_.sessions().end_all(EndCause::Shutdown);
        context_.loop().break_loop();
    });
}

void Worker::join()
{
    if (thread_.joinable())
        thread_.join();
}

} // namespace sluice
