#include "sluice/sd_notify.h"

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sluice/fd.h"

namespace sluice {

bool sd_notify(std::string_view state) noexcept
{
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return false;
    std::size_t length = std::strlen(path);
    sockaddr_un address{};
    if (length >= sizeof(address.sun_path) || (path[0] != '/' && path[0] != '@'))
        return false;
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path, length);
    if (path[0] == '@')
        address.sun_path[0] = '\0';  // abstract namespace: the name is not NUL-terminated
    auto address_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length + (path[0] == '/' ? 1 : 0));

    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return false;
    ssize_t sent = ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                            reinterpret_cast<const sockaddr*>(&address), address_length);
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
