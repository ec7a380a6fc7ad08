#include "sluice/sd_notify.h"

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sluice/fd.h"
#include "sluice/socket.h"

namespace sluice {

bool sd_notify(std::string_view state) noexcept
{
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return false;
    if (path[0] != '/' && path[0] != '@')
        return false;
    Result<UniqueFd> fd = connect_unix(path, SOCK_DGRAM);
    if (!fd)
        return false;
    ssize_t sent = ::send(fd.value().get(), state.data(), state.size(), MSG_NOSIGNAL);
    return sent == static_cast<ssize_t>(state.size());
}

std::string reloading_message()
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    std::uint64_t usec = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
    return fmt::format("RELOADING=1\nMONOTONIC_USEC={}", usec);
}

} // namespace sluice
