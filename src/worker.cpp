#include "sluice/worker.h"

#include "sluice/config.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/tcp_session.h"

#include <fcntl.h>

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
}

void Worker::run()
{
    for (auto& listener : listeners_)
        listener->start();
    loop_.run();
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
