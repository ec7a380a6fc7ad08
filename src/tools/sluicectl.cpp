// sluicectl [-s SOCKET] [--json] COMMAND...: one admin command, its reply on
// stdout. Exit 0 on success, 1 when sluice answered "error: ...", 2 for a usage
// error or when the socket cannot be reached (the message names the path).
#include "sluice/socket.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace {

constexpr const char* kDefaultSocket = "/run/sluice/admin.sock";

void usage(std::FILE* out)
{
    std::fprintf(out,
                 "usage: sluicectl [-s SOCKET] [--json] COMMAND...\n"
                 "\n"
                 "  -s, --socket SOCKET  the admin socket (default %s)\n"
                 "  --json               ask for one line of JSON\n"
                 "  -h, --help           this help\n"
                 "\n"
                 "commands: help | show servers | show stat | show sessions | reload\n"
                 "          set server POOL/BACKEND state ready|drain|maint\n"
                 "          set server POOL/BACKEND weight N\n"
                 "exit status: 0 ok, 1 sluice answered with an error, 2 usage or connection error\n",
                 kDefaultSocket);
}

// send(MSG_NOSIGNAL), not write(2): when sluice closes the connection first
// (it refused us, or it is stopping) the error comes back as EPIPE and is
// reported, instead of SIGPIPE killing sluicectl without a word. SIGPIPE
// keeps its default for stdout, so `sluicectl show sessions | head` ends
// quietly as other filters do.
bool write_all(int fd, const std::string& text)
{
    std::size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        off += static_cast<std::size_t>(n);
    }
    return true;
}

} // namespace

int main(int argc, char** argv)
{
    std::string socket_path = kDefaultSocket;
    bool json = false;
    std::vector<std::string> words;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (words.empty() && (arg == "-s" || arg == "--socket")) {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "sluicectl: %s needs a socket path\n", arg.c_str());
                return 2;
            }
            socket_path = argv[++i];
        } else if (words.empty() && arg.rfind("--socket=", 0) == 0) {
            socket_path = arg.substr(9);
        } else if (words.empty() && arg == "--json") {
            json = true;
        } else if (words.empty() && (arg == "-h" || arg == "--help")) {
            usage(stdout);
            return 0;
        } else if (words.empty() && arg.size() > 1 && arg[0] == '-') {
            std::fprintf(stderr, "sluicectl: unknown option '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        } else {
            words.push_back(arg);
        }
    }
    if (words.empty()) {
        usage(stderr);
        return 2;
    }
    std::string line = json ? "json" : "";
    for (const auto& w : words) {
        if (w.find('\n') != std::string::npos) {
            std::fprintf(stderr, "sluicectl: a command cannot contain a newline\n");
            return 2;
        }
        line += (line.empty() ? "" : " ") + w;
    }

    if (!sluice::unix_address(socket_path)) {
        std::fprintf(stderr, "sluicectl: socket path %s is too long\n", socket_path.c_str());
        return 2;
    }
    sluice::Result<sluice::UniqueFd> connected = sluice::connect_unix(socket_path, SOCK_STREAM);
    if (!connected) {
        std::fprintf(stderr, "sluicectl: cannot connect to %s: %s (is sluice running with [admin] socket set?)\n",
                     socket_path.c_str(), std::strerror(connected.raw_errno()));
        return 2;
    }
    const int fd = connected.value().get();
    const bool sent = write_all(fd, line + "\n");
    const int send_error = errno;
    // The reply ends with an empty line. When sending failed, sluice may
    // still have answered before it closed (it refuses a client it has no
    // room for with an "error: ..." reply): what it said counts as the reply.
    std::string reply;
    char buffer[65536];
    while (reply.size() < 2 || reply.compare(reply.size() - 2, 2, "\n\n") != 0) {
        ssize_t n = ::recv(fd, buffer, sizeof(buffer), sent ? 0 : MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 && !sent) {
            std::fprintf(stderr, "sluicectl: cannot send to %s: %s\n", socket_path.c_str(), std::strerror(send_error));
            return 2;
        }
        if (n <= 0) {
            std::fprintf(stderr, "sluicectl: %s closed the connection before the reply ended%s%s\n",
                         socket_path.c_str(), n < 0 ? ": " : "", n < 0 ? std::strerror(errno) : "");
            return 2;
        }
        reply.append(buffer, static_cast<std::size_t>(n));
    }
    reply.pop_back();  // the terminating empty line
    std::fwrite(reply.data(), 1, reply.size(), stdout);
    return reply.rfind("error:", 0) == 0 ? 1 : 0;
}
