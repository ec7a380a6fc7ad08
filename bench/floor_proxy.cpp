// floor-proxy: the cheapest TCP proxy an epoll design allows, as a yardstick.
//
// It answers one question for bench/README.md: how many connections (and
// requests) per second would sluice reach on this machine if its own code
// cost nothing beyond the syscalls a proxy cannot avoid? It is deliberately
// NOT built from sluice's loop, socket or fd code, and it is not a product:
// IPv4 only, one backend, no timeouts, no balancing, no limits.
//
// What makes it the floor:
//   - raw epoll, edge-triggered, both sockets registered once at accept with
//     IN|OUT|RDHUP: no epoll_ctl after the two ADDs (sluice's libev loop is
//     level-triggered and spends ~3 more epoll_ctl per connection);
//   - the same short-read rule as sluice (a read shorter than the buffer
//     emptied the socket, so no read that would only return EAGAIN), made
//     safe under edge triggering by EPOLLRDHUP, which reports a FIN that
//     arrived with the data;
//   - copies through a 16 KiB buffer per direction, pooled per thread; no
//     splice (the loads it is meant for move 64-byte messages);
//   - per connection: accept4, socket, setsockopt(TCP_NODELAY), connect,
//     2 × epoll_ctl, a read and a send per message, the FIN reads, one
//     shutdown, 2 × close.
//
//   floor-proxy --listen PORT --backend PORT [--workers N] [--pin 1]
//   (127.0.0.1 only; --pin 1 binds worker i to CPU i, like sluice's
//   cpu_affinity = "auto")
//
// Used by `scripts/compare --floor`.

#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kBufferSize = 16 * 1024;

struct Connection;

// What an epoll event points at: one of the connection's two sockets.
struct End {
    Connection* connection;
    int fd;
};

struct Direction {
    char buffer[kBufferSize];
    std::size_t length = 0;  // bytes read, not yet written
    std::size_t offset = 0;
    bool eof = false;        // FIN read from the source
    bool shut = false;       // FIN passed on to the sink
};

struct Connection {
    End client{this, -1};
    End backend{this, -1};
    Direction up;    // client -> backend
    Direction down;  // backend -> client
    bool connected = false;
    bool client_hung_up = false;  // the client's FIN came before the backend connected
    bool closed = false;
    Connection* next_free = nullptr;
};

enum class Step { Ok, Ended, Failed };

// Moves bytes from `source` to `sink` until one would block. Ended: the FIN
// has just been read and everything before it written.
Step pump(Direction& d, int source, int sink, bool source_hung_up)
{
    bool source_drained = false;  // a short read emptied the source
    for (;;) {
        if (d.length > 0) {
            ssize_t w = ::send(sink, d.buffer + d.offset, d.length, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0)
                return errno == EAGAIN ? Step::Ok : Step::Failed;
            d.length -= static_cast<std::size_t>(w);
            d.offset = d.length > 0 ? d.offset + static_cast<std::size_t>(w) : 0;
            if (d.length > 0)
                return Step::Ok;  // the sink is full; EPOLLOUT resumes
            continue;
        }
        if (d.eof)
            return d.shut ? Step::Ok : Step::Ended;
        if (source_drained)
            return Step::Ok;  // the next edge says when there is more
        ssize_t r = ::read(source, d.buffer, sizeof d.buffer);
        if (r < 0)
            return errno == EAGAIN ? Step::Ok : Step::Failed;
        if (r == 0) {
            d.eof = true;
            continue;
        }
        d.length = static_cast<std::size_t>(r);
        // Unless a FIN is known to be queued behind the data (RDHUP), a read
        // shorter than the buffer emptied the socket: another would only
        // return EAGAIN.
        source_drained = d.length < sizeof d.buffer && !source_hung_up;
    }
}

class Worker {
public:
    Worker(int listen_port, int backend_port) : backend_port_(backend_port)
    {
        epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        ::setsockopt(listener_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted sockets
        sockaddr_in address = loopback(listen_port);
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0
            || ::listen(listener_, 4096) != 0) {
            std::perror("floor-proxy: listen");
            std::exit(1);
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;  // nullptr: the listener
        ::epoll_ctl(epoll_, EPOLL_CTL_ADD, listener_, &ev);
    }

    [[noreturn]] void run()
    {
        epoll_event events[64];
        for (;;) {
            int n = ::epoll_wait(epoll_, events, 64, -1);
            for (int i = 0; i < n; ++i) {
                if (events[i].data.ptr == nullptr)
                    accept_all();
                else
                    on_event(*static_cast<End*>(events[i].data.ptr), events[i].events);
            }
            // Closed connections return to the pool only after the batch: a
            // later event of the same batch may still point at them.
            while (closed_ != nullptr) {
                Connection* c = closed_;
                closed_ = c->next_free;
                c->next_free = free_;
                free_ = c;
            }
        }
    }

private:
    static sockaddr_in loopback(int port)
    {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return a;
    }

    void accept_all()
    {
        const sockaddr_in backend = loopback(backend_port_);
        for (;;) {
            int client = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (client < 0)
                return;
            int server = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            int one = 1;
            ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (::connect(server, reinterpret_cast<const sockaddr*>(&backend), sizeof backend) != 0
                && errno != EINPROGRESS) {
                ::close(server);
                ::close(client);
                continue;
            }
            Connection* c = allocate();
            c->client.fd = client;
            c->backend.fd = server;
            for (End* end : {&c->backend, &c->client}) {
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                ev.data.ptr = end;
                ::epoll_ctl(epoll_, EPOLL_CTL_ADD, end->fd, &ev);
            }
        }
    }

    void on_event(End& end, std::uint32_t events)
    {
        Connection& c = *end.connection;
        if (c.closed)
            return;
        if (events & EPOLLERR) {
            close(c);
            return;
        }
        const bool is_backend = &end == &c.backend;
        const bool readable = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP);
        const bool hung_up = events & (EPOLLRDHUP | EPOLLHUP);
        const bool writable = events & EPOLLOUT;
        Step up = Step::Ok;
        Step down = Step::Ok;
        if (is_backend && writable && !c.connected) {
            // Connected: forward what the client sent meanwhile (its edge
            // came while we could not write, so read it now).
            c.connected = true;
            up = pump(c.up, c.client.fd, c.backend.fd, c.client_hung_up);
        }
        if (!c.connected) {
            c.client_hung_up |= hung_up;
            return;
        }
        if (is_backend) {
            if (readable)
                down = pump(c.down, c.backend.fd, c.client.fd, hung_up);
            if (writable && c.up.length > 0 && up == Step::Ok)
                up = pump(c.up, c.client.fd, c.backend.fd, false);
        } else {
            if (readable)
                up = pump(c.up, c.client.fd, c.backend.fd, hung_up);
            if (writable && c.down.length > 0 && down == Step::Ok)
                down = pump(c.down, c.backend.fd, c.client.fd, false);
        }
        if (up == Step::Failed || down == Step::Failed) {
            close(c);
            return;
        }
        if (up == Step::Ended)
            finish(c, c.up, c.backend.fd, c.down);
        if (down == Step::Ended && !c.closed)
            finish(c, c.down, c.client.fd, c.up);
    }

    // A direction's FIN reached its end: pass it on, or close when the other
    // direction has ended too (close sends the last FIN itself).
    void finish(Connection& c, Direction& ended, int sink, const Direction& other)
    {
        ended.shut = true;
        if (other.shut)
            close(c);
        else
            ::shutdown(sink, SHUT_WR);
    }

    void close(Connection& c)
    {
        ::close(c.client.fd);
        ::close(c.backend.fd);
        c.closed = true;
        c.next_free = closed_;
        closed_ = &c;
    }

    Connection* allocate()
    {
        Connection* c = free_;
        if (c == nullptr)
            c = new Connection;
        else
            free_ = c->next_free;
        c->up.length = c->up.offset = c->down.length = c->down.offset = 0;
        c->up.eof = c->up.shut = c->down.eof = c->down.shut = false;
        c->connected = c->client_hung_up = c->closed = false;
        c->next_free = nullptr;
        return c;
    }

    int backend_port_;
    int epoll_ = -1;
    int listener_ = -1;
    Connection* free_ = nullptr;
    Connection* closed_ = nullptr;
};

[[noreturn]] void usage()
{
    std::fprintf(stderr, "usage: floor-proxy --listen PORT --backend PORT [--workers N] [--pin 1]\n");
    std::exit(2);
}

} // namespace

int main(int argc, char** argv)
{
    int listen_port = 0, backend_port = 0, workers = 2, pin = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view flag = argv[i];
        int value = std::atoi(argv[i + 1]);
        if (flag == "--listen")
            listen_port = value;
        else if (flag == "--backend")
            backend_port = value;
        else if (flag == "--workers")
            workers = value;
        else if (flag == "--pin")
            pin = value;
        else
            usage();
    }
    if (listen_port <= 0 || backend_port <= 0 || workers <= 0 || argc % 2 == 0)
        usage();
    std::vector<std::thread> threads;
    for (int i = 0; i < workers; ++i) {
        threads.emplace_back([=] { Worker(listen_port, backend_port).run(); });
        if (pin) {
            cpu_set_t cpus;
            CPU_ZERO(&cpus);
            CPU_SET(i, &cpus);
            pthread_setaffinity_np(threads.back().native_handle(), sizeof cpus, &cpus);
        }
    }
    for (std::thread& t : threads)
        t.join();
}
