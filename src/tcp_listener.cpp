#include "sluice/tcp_listener.h"

#include "sluice/connect_attempts.h"
#include "sluice/log.h"
#include "sluice/socket.h"
#include "sluice/tcp_session.h"
#include "sluice/worker_context.h"

#include <fcntl.h>

namespace sluice {

TcpListener::TcpListener(WorkerContext& worker, UniqueFd fd, const ListenerConfig& config)
    : Listener(config, listener_counters(worker, config), worker.index()), worker_(worker), fd_(std::move(fd))
{
    io_.bind<TcpListener, &TcpListener::on_readable>(worker.loop(), this, fd_.get());
    resume_timer_.bind<TcpListener, &TcpListener::on_resume>(worker.loop(), this);
}

void TcpListener::start()
{
    worker_.loop().assert_loop_thread();
    io_.set_events(EV_READ);
}

void TcpListener::stop()
{
    worker_.loop().assert_loop_thread();
    io_.stop();
    resume_timer_.stop();
    fd_.reset();
}

void TcpListener::on_readable(int)
{
    worker_.loop().assert_loop_thread();
    SharedState& shared = worker_.shared();
    for (int i = 0; i < kAcceptBatch; ++i) {
        SocketAddress peer;
        Result<UniqueFd> accepted = accept_connection(fd_.get(), &peer);
        if (!accepted) {
            switch (accepted.error()) {
            case SysError::WouldBlock:
                return;
            case SysError::Interrupted:
                continue;
            case SysError::TooManyFiles:
                if (!shed_one_connection())
                    return;
                continue;
            default:
                // ECONNABORTED and friends: that client is gone; the next may be fine.
                if (accepted.raw_errno() == ECONNABORTED || accepted.raw_errno() == EPROTO)
                    continue;
                log::warning("listener {}: accept failed: {}", config_->name, describe(accepted.error()));
                return;
            }
        }
        // accept_proxy: the peer is the proxy; the client's address (and so
        // the source checks) comes with its header (TcpSession).
        SourceAdmission source = config_->accept_proxy ? SourceAdmission{} : admit_source(peer);
        if (!source) [[unlikely]]
            continue;  // closing the socket refuses the client
        if (!admit_session(shared)) [[unlikely]]
            continue;  // likewise (the source's count goes back with `source`)
        stats_.accepted.fetch_add(1, std::memory_order_relaxed);

        PoolPicker* pool = worker_.runtime()->find_pool(config_->pool);
        TcpSession& session = worker_.sessions().add(std::make_unique<TcpSession>(
            worker_, worker_.runtime(), *pool, *config_, stats_, std::move(accepted.value()), peer));
        session.hold_source(std::move(source.lease));
        session.start();
    }
}

// At the descriptor limit the pending connection stays in the accept queue and
// the listener stays readable: without this the loop would spin. Give up the
// reserve descriptor, accept the connection, close it (the client sees a clean
// refusal instead of a hang), and take the reserve back.
bool TcpListener::shed_one_connection()
{
    UniqueFd& reserve = worker_.reserve_fd();
    if (!reserve.valid()) {
        // Another thread took the descriptor we freed last time: wait a little
        // rather than spin on a listener that stays readable.
        reserve.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        io_.set_events(0);
        resume_timer_.start(kPauseAtFdLimit);
        return false;
    }
    reserve.reset();
    // Closed at once (the client sees a refusal, not a hang), so the reserve
    // can be taken back with the descriptor it used.
    SysError error = accept_connection(fd_.get(), nullptr).error();
    reserve.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (error != SysError::None) {
        // Nothing was waiting after all, or the freed descriptor went to
        // another thread: let epoll, or the pause, say when to try again.
        if (error != SysError::WouldBlock) {
            io_.set_events(0);
            resume_timer_.start(kPauseAtFdLimit);
        }
        return false;
    }
    stats_.rejected.fetch_add(1, std::memory_order_relaxed);
    note_client_turned_away(SysError::TooManyFiles, monotonic_ms());
    return true;
}

void TcpListener::on_resume()
{
    worker_.loop().assert_loop_thread();
    if (fd_.valid())
        io_.set_events(EV_READ);
}

} // namespace sluice
