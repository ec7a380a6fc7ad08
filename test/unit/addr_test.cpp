#include "sluice/addr.h"

#include <catch2/catch.hpp>

using sluice::SocketAddress;

TEST_CASE("an IPv4 host:port parses and prints back the same")
{
    auto a = SocketAddress::parse("10.0.1.10:5432");
    REQUIRE(a);
    CHECK(a->family() == AF_INET);
    CHECK(a->port() == 5432);
    CHECK(a->to_string() == "10.0.1.10:5432");
}

TEST_CASE("an IPv6 address needs brackets and prints with them")
{
    auto a = SocketAddress::parse("[::1]:80");
    REQUIRE(a);
    CHECK(a->is_ipv6());
    CHECK(a->port() == 80);
    CHECK(a->to_string() == "[::1]:80");
    CHECK_FALSE(SocketAddress::parse("::1:80"));
    CHECK_FALSE(SocketAddress::parse("[127.0.0.1]:80"));
}

TEST_CASE("wildcards and localhost are accepted")
{
    CHECK(SocketAddress::parse("*:8080")->to_string() == "0.0.0.0:8080");
    CHECK(SocketAddress::parse("[::]:8080")->to_string() == "[::]:8080");
    CHECK(SocketAddress::parse("localhost:1")->to_string() == "127.0.0.1:1");
}

TEST_CASE("bad addresses and ports are rejected")
{
    for (const char* bad : {"", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:80x",
                            "1.2.3:80", "300.1.1.1:80", "example.com:80", "[::1]80", "[::1", ":80",
                            "1.2.3.4:123456"}) {
        INFO(bad);
        CHECK_FALSE(SocketAddress::parse(bad));
    }
}

TEST_CASE("port 0 is a valid listen port meaning any free port")
{
    auto a = SocketAddress::parse("127.0.0.1:0");
    REQUIRE(a);
    CHECK(a->port() == 0);
}

TEST_CASE("ip_hash ignores the port, full_hash does not")
{
    auto a = *SocketAddress::parse("127.0.0.1:1000");
    auto b = *SocketAddress::parse("127.0.0.1:2000");
    auto c = *SocketAddress::parse("127.0.0.2:1000");
    CHECK(a.ip_hash() == b.ip_hash());
    CHECK(a.ip_hash() != c.ip_hash());
    CHECK(a.full_hash() != b.full_hash());
    CHECK(a.same_ip(b));
    CHECK_FALSE(a == b);
}
