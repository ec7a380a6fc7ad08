// Config and client helpers shared by the operations tests (admin socket,
// metrics, reload, signals).
#pragma once

#include "harness.h"

#include <arpa/inet.h>
#include <cerrno>
#include <fmt/format.h>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace sluice::test {

struct NamedBackend {
    std::string name;
    std::string address;
};

// One listener "front" on 127.0.0.1:0 in front of pool "p", an admin socket at
// @DIR@/admin.sock and metrics on 127.0.0.1:0.
inline std::string ops_config(const std::vector<NamedBackend>& backends, const std::string& pool_extra = "",
                              const std::string& global_extra = "workers = 2",
                              const std::string& listener_extra = "", const std::string& more = "")
{
    std::string list;
    for (const auto& b : backends)
        list += fmt::format("  {{ address = \"{}\", name = \"{}\" }},\n", b.address, b.name);
    return fmt::format("[global]\n{}\n\n[admin]\nsocket = \"@DIR@/admin.sock\"\nmetrics = \"127.0.0.1:0\"\n\n"
                       "[[listeners]]\nname = \"front\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n{}\n\n"
                       "[pools.p]\n{}\nbackends = [\n{}]\n{}",
                       global_extra, listener_extra, pool_extra, list, more);
}

inline std::string admin_path(Sluice& sluice) { return sluice.dir() + "/admin.sock"; }

// A connect that reports failure instead of failing the test: usable from
// client threads (Catch2 assertions are not thread-safe). -1 on failure.
inline int try_connect(std::uint16_t port)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(fd);
        return -1;
    }
    set_receive_timeout(fd, 10s);
    return fd;
}


// The value of the first sample line that starts with `series` (name and
// labels exactly as printed), or -1.
inline double metric_value(const std::string& text, const std::string& series)
{
    std::size_t at = 0;
    while ((at = text.find(series + " ", at)) != std::string::npos) {
        if (at == 0 || text[at - 1] == '\n') {
            auto end = text.find('\n', at);
            return std::stod(text.substr(at + series.size() + 1, end - at - series.size() - 1));
        }
        at += series.size();
    }
    return -1;
}

} // namespace sluice::test
