#include "sluice/listener_factory.h"

#include "sluice/socket.h"
#include "sluice/tcp_listener.h"
#include "sluice/udp_flow.h"

namespace sluice {

Result<UniqueFd> open_listener_socket(const ListenerConfig& config, const SocketAddress& address, int backlog)
{
    switch (config.protocol) {
    case Protocol::Tcp: {
        ListenOptions options;
        options.backlog = backlog;
        Result<UniqueFd> sock = open_tcp_listener(address, options);
        // Linux copies TCP_NODELAY from the listener into every accepted
        // socket, which saves the session a setsockopt per connection.
        if (sock)
            set_nodelay(sock.value().get());
        return sock;
    }
    case Protocol::Udp:
        return open_udp_socket(address, true);
    }
    return Result<UniqueFd>(SysError::Invalid, EINVAL);
}

std::unique_ptr<Listener> make_listener(WorkerContext& worker, UniqueFd fd, const ListenerConfig& config)
{
    switch (config.protocol) {
    case Protocol::Tcp:
        return std::make_unique<TcpListener>(worker, std::move(fd), config);
    case Protocol::Udp:
        return std::make_unique<UdpListener>(worker, std::move(fd), config);
    }
    return nullptr;
}

} // namespace sluice
