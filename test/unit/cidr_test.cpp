#include "sluice/cidr.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>

using sluice::CidrSet;
using sluice::SocketAddress;

namespace {

SocketAddress ip(const char* text)
{
    auto a = SocketAddress::from_ip(text, 1234);
    REQUIRE(a);
    return *a;
}

} // namespace

TEST_CASE("an empty cidr set contains nothing")
{
    CidrSet set;
    CHECK(set.empty());
    CHECK_FALSE(set.contains(ip("10.0.0.1")));
    CHECK_FALSE(set.contains(ip("::1")));
}

TEST_CASE("a cidr set matches IPv4 prefixes at their boundaries")
{
    CidrSet set;
    REQUIRE_FALSE(set.add("10.0.0.0/8"));
    REQUIRE_FALSE(set.add("192.168.1.0/24"));
    REQUIRE_FALSE(set.add("127.0.0.5"));
    CHECK(set.size() == 3);
    CHECK(set.contains(ip("10.0.0.0")));
    CHECK(set.contains(ip("10.255.255.255")));
    CHECK_FALSE(set.contains(ip("11.0.0.0")));
    CHECK_FALSE(set.contains(ip("9.255.255.255")));
    CHECK(set.contains(ip("192.168.1.77")));
    CHECK_FALSE(set.contains(ip("192.168.2.1")));
    CHECK(set.contains(ip("127.0.0.5")));
    CHECK_FALSE(set.contains(ip("127.0.0.4")));
    CHECK_FALSE(set.contains(ip("127.0.0.6")));
}

TEST_CASE("a cidr set keeps IPv4 and IPv6 apart and reads IPv4-mapped addresses as IPv4")
{
    CidrSet set;
    REQUIRE_FALSE(set.add("2001:db8::/32"));
    REQUIRE_FALSE(set.add("127.0.0.0/8"));
    CHECK(set.contains(ip("2001:db8::1")));
    CHECK(set.contains(ip("2001:db8:ffff::1")));
    CHECK_FALSE(set.contains(ip("2001:db9::1")));
    CHECK(set.contains(ip("::ffff:127.0.0.1")));
    CHECK_FALSE(set.contains(ip("::ffff:128.0.0.1")));
    // ::/0 style catch-alls are per family
    CidrSet v6_all;
    REQUIRE_FALSE(v6_all.add("::/0"));
    CHECK(v6_all.contains(ip("::1")));
    CHECK_FALSE(v6_all.contains(ip("1.2.3.4")));
    CidrSet v4_all;
    REQUIRE_FALSE(v4_all.add("0.0.0.0/0"));
    CHECK(v4_all.contains(ip("1.2.3.4")));
    CHECK(v4_all.contains(ip("::ffff:1.2.3.4")));
    CHECK_FALSE(v4_all.contains(ip("::1")));
}

TEST_CASE("a shorter prefix added before or after a longer one covers it")
{
    CidrSet longer_first;
    REQUIRE_FALSE(longer_first.add("10.1.2.0/24"));
    REQUIRE_FALSE(longer_first.add("10.0.0.0/8"));
    CHECK(longer_first.contains(ip("10.9.9.9")));
    CidrSet shorter_first;
    REQUIRE_FALSE(shorter_first.add("10.0.0.0/8"));
    REQUIRE_FALSE(shorter_first.add("10.1.2.0/24"));
    CHECK(shorter_first.contains(ip("10.1.2.3")));
    CHECK(shorter_first.contains(ip("10.200.0.1")));
}

TEST_CASE("a cidr set rejects bad prefixes with the text in the message")
{
    CidrSet set;
    for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8x",
                            "10.0.0/8", "host.example/8", "10.0.0.1/8", "2001:db8::1/32", "1.2.3.4:80"}) {
        INFO(bad);
        auto error = set.add(bad);
        REQUIRE(error);
        CHECK(error->find(std::string("\"") + bad + "\"") != std::string::npos);
    }
    CHECK(set.empty());
}

TEST_CASE("a 10,000-entry cidr set agrees with a linear scan")
{
    // Random /16../32 IPv4 prefixes; every lookup is compared with checking
    // each entry in turn, so the trie's walk is proven equal to the plain rule.
    std::mt19937 rng(42);
    CidrSet set;
    std::vector<std::pair<std::uint32_t, int>> entries;
    while (entries.size() < 10000) {
        const int len = 16 + static_cast<int>(rng() % 17);
        const std::uint32_t mask = len == 32 ? ~0u : ~(~0u >> len);
        const std::uint32_t net = (0x0a000000u | (rng() & 0x00ffffffu)) & mask;
        char text[32];
        std::snprintf(text, sizeof(text), "%u.%u.%u.%u/%d", net >> 24, (net >> 16) & 255, (net >> 8) & 255,
                      net & 255, len);
        REQUIRE_FALSE(set.add(text));
        entries.emplace_back(net, len);
    }
    int inside = 0;
    for (int i = 0; i < 20000; ++i) {
        const std::uint32_t a = 0x0a000000u | (rng() & 0x00ffffffu);
        bool expected = false;
        for (auto [net, len] : entries) {
            const std::uint32_t mask = len == 32 ? ~0u : ~(~0u >> len);
            expected = expected || (a & mask) == net;
        }
        char text[20];
        std::snprintf(text, sizeof(text), "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
        REQUIRE(set.contains(ip(text)) == expected);
        inside += expected;
    }
    CHECK(inside > 0);  // the comparison covered both answers
    CHECK(inside < 20000);
}
