// The relay of one direction, on real sockets: socketpairs for exact control,
// a loopback TCP pair where splice(2) must be exercised.
#include "sluice/relay.h"

#include "sluice/fd.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace sluice;

namespace {

struct SocketPair {
    UniqueFd near;  // the relay's side
    UniqueFd far;   // the peer's side, driven by the test
};

SocketPair unix_pair()
{
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// A connected loopback TCP pair, both ends non-blocking (splice needs TCP).
SocketPair tcp_pair()
{
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listener.get(), 1) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server.valid());
    ::fcntl(client.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(server.get(), F_SETFL, O_NONBLOCK);
    return {std::move(server), std::move(client)};
}

void write_all(int fd, const std::string& bytes)
{
    std::size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        REQUIRE(n > 0);
        off += static_cast<std::size_t>(n);
    }
}

// Everything readable now from `fd`; sets `eof` when the peer's FIN was read.
std::string read_available(int fd, bool* eof)
{
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n > 0) {
            out.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0 && eof)
            *eof = true;
        return out;
    }
}

std::string pattern(std::size_t size)
{
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

struct Pools {
    PipePool pipes{1 << 16, 4};
    BufferPool buffers{4};
    TransitPools transit() { return {pipes, buffers}; }
};

} // namespace

TEST_CASE("a FIN read by the last allowed read is passed on in the same call")
{
    // Sessions once hung forever here: the read budget ran out right after
    // the read that returned 0, leaving the FIN read, nothing pending, the
    // sink not shut, and no event left to wait for.
    Pools pools;
    SocketPair source = unix_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;

    SECTION("a FIN alone")
    {
        ::shutdown(source.far.get(), SHUT_WR);
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown, 1) == PumpResult::Ok);
    }
    SECTION("a large read, then the FIN on the last read")
    {
        write_all(source.far.get(), pattern(RelayDirection::kShortRead + 100));
        ::shutdown(source.far.get(), SHUT_WR);
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown, 2) == PumpResult::Ok);
        bool eof = false;
        CHECK(read_available(sink.far.get(), &eof) == pattern(RelayDirection::kShortRead + 100));
    }
    CHECK(dir.eof);
    CHECK(dir.done());
    CHECK_FALSE(dir.wants_read());
    CHECK_FALSE(dir.wants_write());
    bool eof = false;
    read_available(sink.far.get(), &eof);
    CHECK(eof);
}

TEST_CASE("a direction whose read budget ran out still waits on its source")
{
    Pools pools;
    SocketPair source = unix_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;
    const std::string bytes = pattern(4 * RelayDirection::kShortRead);
    // Large writes in separate chunks, so every read is long and none drains.
    write_all(source.far.get(), bytes);
    REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown, 1) == PumpResult::Ok);
    // One read's worth moved; the rest is still in the source, which the
    // direction must keep watching.
    CHECK(dir.wants_read());
    CHECK_FALSE(dir.done());
    bool eof = false;
    std::string got = read_available(sink.far.get(), &eof);
    while (got.size() < bytes.size()) {
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown, 1) == PumpResult::Ok);
        got += read_available(sink.far.get(), &eof);
    }
    CHECK(got == bytes);
    CHECK_FALSE(eof);
}

TEST_CASE("a half-close delivers every byte before the FIN, through splice")
{
    Pools pools;
    SocketPair source = tcp_pair();
    SocketPair sink = tcp_pair();
    RelayDirection dir;
    const std::string bytes = pattern(3 << 20);
    std::string got;
    bool eof = false;
    std::size_t sent = 0;
    bool fin_sent = false;
    int calls = 0;
    while (!eof) {
        REQUIRE(++calls < 1'000'000);
        if (sent < bytes.size()) {
            ssize_t n = ::send(source.far.get(), bytes.data() + sent, std::min<std::size_t>(bytes.size() - sent, 100'000),
                               MSG_NOSIGNAL);
            if (n > 0)
                sent += static_cast<std::size_t>(n);
        } else if (!fin_sent) {
            ::shutdown(source.far.get(), SHUT_WR);
            fin_sent = true;
        }
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown) == PumpResult::Ok);
        got += read_available(sink.far.get(), &eof);
    }
    CHECK(got.size() == bytes.size());
    CHECK(got == bytes);
    CHECK(dir.done());
    CHECK(dir.bytes == bytes.size());
    CHECK(pools.pipes.idle() >= 1);  // the streaming direction used a pipe and gave it back
    CHECK_FALSE(dir.pipe.valid());
    CHECK_FALSE(dir.buffer);
}

TEST_CASE("a sink that cannot take more stops the source from being read")
{
    Pools pools;
    SocketPair source = unix_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;
    const std::string bytes = pattern(8 << 20);
    std::size_t sent = 0;
    // Feed the source until the relay leaves bytes pending (the sink is full).
    for (int i = 0; i < 1000 && !dir.wants_write(); ++i) {
        ssize_t n = ::send(source.far.get(), bytes.data() + sent, 65536, MSG_NOSIGNAL);
        if (n > 0)
            sent += static_cast<std::size_t>(n);
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown) == PumpResult::Ok);
    }
    REQUIRE(dir.wants_write());
    CHECK_FALSE(dir.wants_read());  // backpressure: the source waits for the sink
    // Draining the sink lets the rest through, byte for byte.
    std::string got;
    bool eof = false;
    ::shutdown(source.far.get(), SHUT_WR);
    for (int i = 0; i < 100000 && !eof; ++i) {
        got += read_available(sink.far.get(), &eof);
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown) == PumpResult::Ok);
    }
    CHECK(eof);
    CHECK(got == bytes.substr(0, sent));
}

TEST_CASE("a sink that is gone fails the direction on the sink's side")
{
    Pools pools;
    SocketPair source = unix_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;
    sink.far.reset();
    write_all(source.far.get(), "hello");
    CHECK(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown) == PumpResult::SinkFailed);
}

TEST_CASE("a reset source fails the direction on the source's side")
{
    Pools pools;
    SocketPair source = tcp_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;
    linger lg{1, 0};
    ::setsockopt(source.far.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    source.far.reset();  // RST
    PumpResult result = PumpResult::Ok;
    for (int i = 0; i < 1000 && result == PumpResult::Ok; ++i)
        result = pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown);
    CHECK(result == PumpResult::SourceFailed);
}

TEST_CASE("a short read is written and the direction goes idle holding nothing")
{
    Pools pools;
    SocketPair source = unix_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;
    write_all(source.far.get(), "SELECT 1;");
    REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown) == PumpResult::Ok);
    bool eof = false;
    CHECK(read_available(sink.far.get(), &eof) == "SELECT 1;");
    CHECK(dir.wants_read());
    CHECK_FALSE(dir.streaming);
    CHECK_FALSE(dir.pipe.valid());
    CHECK_FALSE(dir.buffer);
    CHECK(pools.buffers.idle() == 1);
}

TEST_CASE("the last FIN of a session is left to its close when asked")
{
    Pools pools;
    SocketPair source = unix_pair();
    SocketPair sink = unix_pair();
    RelayDirection dir;
    ::shutdown(source.far.get(), SHUT_WR);
    REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::LeaveToClose) == PumpResult::Ok);
    CHECK(dir.done());
    bool eof = false;
    read_available(sink.far.get(), &eof);
    CHECK_FALSE(eof);  // not sent: closing the sink sends it
}

TEST_CASE("a streaming direction that cannot get a pipe copies instead of failing")
{
    Pools pools;
    SocketPair source = tcp_pair();
    SocketPair sink = tcp_pair();
    RelayDirection dir;
    const std::string first = pattern(RelayDirection::kShortRead * 2);
    write_all(source.far.get(), first);
    std::string got;
    bool eof = false;
    for (int i = 0; i < 1000 && got.size() < first.size(); ++i) {
        REQUIRE(pump(dir, source.near.get(), sink.near.get(), pools.transit(), FinAction::Shutdown) == PumpResult::Ok);
        got += read_available(sink.far.get(), &eof);
    }
    REQUIRE(got == first);
    REQUIRE(dir.streaming);  // the next read would splice

    // Out of descriptors: no new pipe can be made.
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    int lowest_free = ::dup(0);
    REQUIRE(lowest_free >= 0);
    ::close(lowest_free);
    rlimit tight = saved;
    tight.rlim_cur = static_cast<rlim_t>(lowest_free);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
    // Emptied pools, so a pipe would have to be created.
    Pools starved;
    const std::string second = pattern(RelayDirection::kShortRead * 4);
    write_all(source.far.get(), second);
    ::shutdown(source.far.get(), SHUT_WR);
    got.clear();
    PumpResult result = PumpResult::Ok;
    for (int i = 0; i < 1000 && !eof && result == PumpResult::Ok; ++i) {
        result = pump(dir, source.near.get(), sink.near.get(), starved.transit(), FinAction::Shutdown);
        got += read_available(sink.far.get(), &eof);
    }
    ::setrlimit(RLIMIT_NOFILE, &saved);
    CHECK(result == PumpResult::Ok);
    CHECK(dir.splice_off);
    CHECK(eof);
    CHECK(got == second);
}
