#include "sluice/pipe_pool.h"

#include <catch2/catch.hpp>

#include <unistd.h>

using sluice::BufferPool;
using sluice::Pipe;
using sluice::PipePool;

TEST_CASE("a returned pipe is reused instead of creating a new one")
{
    PipePool pool(1 << 16, 4);
    Pipe first = pool.acquire();
    REQUIRE(first.valid());
    int read_fd = first.read_fd();
    pool.release(std::move(first));
    CHECK(pool.idle() == 1);
    Pipe again = pool.acquire();
    CHECK(again.read_fd() == read_fd);
    CHECK(pool.idle() == 0);
}

TEST_CASE("the pipe pool keeps at most max_idle pipes open")
{
    PipePool pool(1 << 16, 2);
    std::vector<Pipe> pipes;
    for (int i = 0; i < 5; ++i)
        pipes.push_back(pool.acquire());
    for (auto& p : pipes)
        pool.release(std::move(p));
    CHECK(pool.idle() == 2);
}

TEST_CASE("pipes are created with the requested capacity where allowed")
{
    PipePool pool(1 << 20, 1);
    Pipe p = pool.acquire();
    REQUIRE(p.valid());
    // Root may always raise to pipe-max-size (1 MiB by default); others may
    // be capped, in which case the granted size is reported.
    CHECK(p.capacity() >= 4096);
}

TEST_CASE("buffers are reused and bounded in number")
{
    BufferPool pool(1);
    auto a = pool.acquire();
    auto b = pool.acquire();
    REQUIRE(a);
    REQUIRE(b);
    char* raw = a.get();
    pool.release(std::move(a));
    pool.release(std::move(b));
    CHECK(pool.idle() == 1);
    CHECK(pool.acquire().get() == raw);
}
