#include "sluice/fd.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace sluice {

void UniqueFd::reset(int fd) noexcept
{
    if (fd_ >= 0) {
        // Linux always releases the descriptor, even when close() reports EINTR,
        // so retrying would risk closing a descriptor another thread just got.
        int saved = errno;
        ::close(fd_);
        errno = saved;
    }
    fd_ = fd;
}

Pipe Pipe::create(std::size_t capacity)
{
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return Pipe{};
    Pipe pipe;
    pipe.read_end_.reset(fds[0]);
    pipe.write_end_.reset(fds[1]);
    int granted = -1;
    if (capacity > 0)
        granted = ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(capacity));
    if (granted < 0)
        granted = ::fcntl(fds[1], F_GETPIPE_SZ);
    pipe.capacity_ = granted > 0 ? static_cast<std::size_t>(granted) : 65536;
    return pipe;
}

std::int64_t raise_fd_limit() noexcept
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 1024;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return static_cast<std::int64_t>(limit.rlim_cur);
}

} // namespace sluice
