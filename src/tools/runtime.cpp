#include "runtime.h"

#include <cerrno>
#include <csignal>
#include <sys/resource.h>

namespace sluice::tools {

namespace {
sigset_t stop_signals() noexcept
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}
} // namespace

void block_stop_signals() noexcept
{
    sigset_t set = stop_signals();
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // Writes use MSG_NOSIGNAL; this covers stdout closed under us.
    std::signal(SIGPIPE, SIG_IGN);
}

int wait_for_stop_signal(std::chrono::nanoseconds timeout) noexcept
{
    sigset_t set = stop_signals();
    auto ns = timeout.count() < 0 ? 0 : timeout.count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    for (;;) {
        int sig = ::sigtimedwait(&set, nullptr, &ts);
        if (sig > 0)
            return sig;
        // EINTR (another signal, e.g. SIGWINCH) restarts with the full
        // timeout: callers loop on a deadline anyway.
        if (errno != EINTR)
            return 0;
    }
}

} // namespace sluice::tools
