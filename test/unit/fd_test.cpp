#include "sluice/fd.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

using sluice::Pipe;
using sluice::UniqueFd;

namespace {
bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }
} // namespace

TEST_CASE("UniqueFd closes its descriptor when it goes out of scope")
{
    int raw = -1;
    {
        UniqueFd fd(::dup(STDIN_FILENO));
        raw = fd.get();
        REQUIRE(is_open(raw));
    }
    CHECK_FALSE(is_open(raw));
}

TEST_CASE("UniqueFd release hands over the descriptor without closing it")
{
    UniqueFd fd(::dup(STDIN_FILENO));
    int raw = fd.release();
    CHECK_FALSE(fd.valid());
    CHECK(is_open(raw));
    ::close(raw);
}

TEST_CASE("moving a UniqueFd transfers ownership exactly once")
{
    UniqueFd a(::dup(STDIN_FILENO));
    int raw = a.get();
    UniqueFd b(std::move(a));
    CHECK_FALSE(a.valid());
    CHECK(b.get() == raw);
    UniqueFd c;
    c = std::move(b);
    CHECK(c.get() == raw);
    CHECK(is_open(raw));
    c.reset();
    CHECK_FALSE(is_open(raw));
}

TEST_CASE("a pipe is non-blocking and reports the capacity it was granted")
{
    Pipe p = Pipe::create(1 << 20);
    REQUIRE(p.valid());
    CHECK((::fcntl(p.read_fd(), F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(p.write_fd(), F_GETFL) & O_NONBLOCK) != 0);
    CHECK(static_cast<long>(p.capacity()) == ::fcntl(p.write_fd(), F_GETPIPE_SZ));
    CHECK(p.capacity() >= 4096);
}

TEST_CASE("a pipe's ends are closed with it")
{
    int r = -1, w = -1;
    {
        Pipe p = Pipe::create(0);
        r = p.read_fd();
        w = p.write_fd();
    }
    CHECK_FALSE(is_open(r));
    CHECK_FALSE(is_open(w));
}
