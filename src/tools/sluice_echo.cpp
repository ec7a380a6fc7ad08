// sluice-echo: wiring only. Options and the server live in echo_server.*.
#include "echo_server.h"
#include "runtime.h"
#include "sluice/socket.h"

#include <fmt/format.h>

#include <cstdio>
#include <thread>
#include <vector>

using namespace sluice;
using namespace sluice::tools;

int main(int argc, char** argv)
{
    block_stop_signals();
    EchoParseResult parsed = parse_echo_options(argc, argv);
    if (parsed.help) {
        std::fputs(kEchoUsage, stdout);
        return 0;
    }
    if (!parsed.error.empty()) {
        fmt::print(stderr, "sluice-echo: {}\n(see sluice-echo --help)\n", parsed.error);
        return 2;
    }
    const EchoOptions& options = parsed.options;
    raise_fd_limit();

    // Bind every thread's socket before serving: with port 0 the first one
    // picks the port and the others join it through SO_REUSEPORT.
    SocketAddress address = options.listen;
    std::vector<UniqueFd> sockets;
    for (unsigned i = 0; i < options.threads; ++i) {
        auto socket = options.udp ? open_udp_socket(address, true) : open_tcp_listener(address, ListenOptions{});
        if (!socket) {
            fmt::print(stderr, "sluice-echo: cannot listen on {}: {}\n", address.to_string(), describe(socket.error()));
            return 1;
        }
        if (i == 0)
            address = local_address(socket.value().get());
        sockets.push_back(std::move(socket).value());
    }
    std::string name = options.name.empty() ? address.to_string() : options.name;

    std::vector<std::unique_ptr<EchoWorker>> workers;
    for (auto& socket : sockets)
        workers.push_back(std::make_unique<EchoWorker>(options, name, std::move(socket)));
    std::vector<std::thread> threads;
    for (auto& worker : workers)
        threads.emplace_back([w = worker.get()] { w->run(); });

    fmt::print("listening on {}\n", address.to_string());
    std::fflush(stdout);

    while (wait_for_stop_signal(std::chrono::hours(1)) == 0) {
    }
    for (auto& worker : workers)
        worker->stop();
    for (auto& thread : threads)
        thread.join();
    return 0;
}
