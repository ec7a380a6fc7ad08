#include "sluice/session.h"

#include "sluice/access_log.h"
#include "sluice/event_loop.h"
#include "sluice/runtime.h"
#include "sluice/worker_runtime.h"

namespace sluice {

std::string_view to_string(EndCause cause) noexcept
{
    switch (cause) {
    case EndCause::Done: return "done";
    case EndCause::ClientReset: return "client-reset";
    case EndCause::BackendReset: return "backend-reset";
    case EndCause::IdleTimeout: return "idle-timeout";
    case EndCause::NoBackend: return "no-backend";
    case EndCause::Shutdown: return "shutdown";
    case EndCause::ResourceLimit: return "resource-limit";
    case EndCause::Responses: return "responses";
    case EndCause::BackendRefused: return "backend-refused";
    case EndCause::BackendError: return "backend-error";
    case EndCause::BackendDown: return "backend-down";
    case EndCause::AdminShutdown: return "admin-shutdown";
    case EndCause::PrimaryUp: return "primary-up";
    case EndCause::ProxyRefused: return "proxy-refused";
    case EndCause::QueueTimeout: return "queue-timeout";
    case EndCause::QueueFull: return "queue-full";
    case EndCause::FinTimeout: return "fin-timeout";
    case EndCause::SourceRefused: return "source-refused";
    }
    return "done";
}

Session::~Session() = default;

SessionRegistry::SessionRegistry(std::atomic<std::int64_t>& admitted, const EventLoop& loop, unsigned worker)
    : admitted_(admitted), loop_(loop), worker_(worker)
{
}

SessionRegistry::~SessionRegistry()
{
    // Normally empty: the worker ended its sessions on its thread at shutdown.
    if (head_)
        end_all(EndCause::Shutdown);
}

void SessionRegistry::link(Session* session) noexcept
{
    loop_.assert_loop_thread();
    session->prev_ = nullptr;
    session->next_ = head_;
    if (head_)
        head_->prev_ = session;
    head_ = session;
    count_.fetch_add(1, std::memory_order_relaxed);
}

void SessionRegistry::set_backend(Session& session, BackendId backend) noexcept
{
    loop_.assert_loop_thread();
    clear_backend(session);
    if (backend >= by_backend_.size()) {
        try {
            by_backend_.resize(std::size_t{backend} + 1, nullptr);
        } catch (...) {
            return;  // out of memory: the session just is not listed under its backend
        }
    }
    Session*& head = by_backend_[backend];
    session.prev_of_backend_ = nullptr;
    session.next_of_backend_ = head;
    if (head)
        head->prev_of_backend_ = &session;
    head = &session;
    session.backend_ = backend;
    session.has_backend_ = true;
}

void SessionRegistry::clear_backend(Session& session) noexcept
{
    if (!session.has_backend_)
        return;
    if (session.backend_ < by_backend_.size()) {
        Session*& head = by_backend_[session.backend_];
        if (session.prev_of_backend_)
            session.prev_of_backend_->next_of_backend_ = session.next_of_backend_;
        else if (head == &session)
            head = session.next_of_backend_;
        if (session.next_of_backend_)
            session.next_of_backend_->prev_of_backend_ = session.prev_of_backend_;
    }
    session.prev_of_backend_ = session.next_of_backend_ = nullptr;
    session.has_backend_ = false;
}

void SessionRegistry::finish(Session& session, EndCause cause) noexcept
{
    loop_.assert_loop_thread();
    admitted_.fetch_sub(1, std::memory_order_relaxed);
    // Before the access line: a client that sees the end may reconnect at
    // once, on any worker, and must find its place free.
    session.source_lease_.release();
    record_end(session, cause);
    const bool had_backend = session.has_backend_;
    const BackendId backend = session.backend_;
    clear_backend(session);
    // Keeps backend() answering for the destructor of the protocol part.
    session.has_backend_ = had_backend;
    session.backend_ = backend;
    if (session.prev_)
        session.prev_->next_ = session.next_;
    else
        head_ = session.next_;
    if (session.next_)
        session.next_->prev_ = session.prev_;
    count_.fetch_sub(1, std::memory_order_relaxed);
    delete &session;
}

void SessionRegistry::end_all(EndCause cause)
{
    while (head_)
        head_->end(cause);
}

std::size_t SessionRegistry::end_backend_sessions(BackendId backend, EndCause cause)
{
    loop_.assert_loop_thread();
    std::size_t ended = 0;
    while (backend < by_backend_.size() && by_backend_[backend]) {
        by_backend_[backend]->end(cause);
        ++ended;
    }
    return ended;
}

void SessionRegistry::record_end(const Session& session, EndCause cause) const noexcept
{
    if (!session.worker_runtime_ || !session.worker_runtime_->runtime)
        return;  // a session made without a generation (unit tests)
    const Runtime& runtime = *session.worker_runtime_->runtime;
    const PoolRuntime* pool = session.pool_ ? session.pool_ : runtime.find_pool(session.listener().pool);
    const double duration = loop_.now() - session.started_at();
    if (pool && pool->histograms)
        pool->histograms->worker(worker_).session_duration.record(kSessionLadder, duration);

    const ListenerRuntime* listener = runtime.find_listener(session.listener());
    if (!listener || !listener->access_log)
        return;
    try {
        SessionCounts counts = session.counts();
        AccessRecord record;
        record.listener = session.listener().name;
        record.protocol = session.protocol();
        record.client = session.client().to_string();
        record.backend = "-";
        if (auto id = session.backend(); id && pool)
            record.backend = pool->label(*id);
        if (session.connect_seconds() >= 0)
            record.connect_ms = session.connect_seconds() * 1000.0;
        record.duration_ms = static_cast<std::int64_t>(duration * 1000.0);
        record.bytes_in = counts.bytes_in;
        record.bytes_out = counts.bytes_out;
        record.datagrams_in = counts.datagrams_in;
        record.datagrams_out = counts.datagrams_out;
        record.retries = session.retries();
        record.end = to_string(cause);
        listener->access_log->write_line(format_access_line(record, session.listener().access_log_format));
    } catch (...) {
        // Out of memory: no access line for this session.
    }
}

} // namespace sluice
