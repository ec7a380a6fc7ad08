#include "sluice/proxy_protocol.h"

#include <catch2/catch.hpp>

#include <random>
#include <string>

using sluice::encode_proxy_v1;
using sluice::encode_proxy_v2;
using sluice::kProxyMaxEncodedLength;
using sluice::parse_proxy_header;
using sluice::ProxyParse;
using sluice::SocketAddress;
using Status = ProxyParse::Status;

namespace {

SocketAddress at(const char* ip, std::uint16_t port)
{
    auto a = SocketAddress::from_ip(ip, port);
    REQUIRE(a);
    return *a;
}

std::string v1(const SocketAddress& s, const SocketAddress& d)
{
    char out[kProxyMaxEncodedLength];
    return std::string(out, encode_proxy_v1(s, d, out));
}

std::string v2(const SocketAddress& s, const SocketAddress& d)
{
    char out[kProxyMaxEncodedLength];
    return std::string(out, encode_proxy_v2(s, d, out));
}

const std::string kSig{"\r\n\r\n\0\r\nQUIT\n", 12};

} // namespace

TEST_CASE("v1 encoder writes the exact TCP4 and TCP6 lines")
{
    CHECK(v1(at("192.0.2.7", 51234), at("10.0.0.1", 5432)) == "PROXY TCP4 192.0.2.7 10.0.0.1 51234 5432\r\n");
    CHECK(v1(at("2001:db8::7", 1), at("::1", 65535)) == "PROXY TCP6 2001:db8::7 ::1 1 65535\r\n");
    // Mixed families: the IPv4 side is mapped into IPv6.
    CHECK(v1(at("192.0.2.7", 10), at("::1", 20)) == "PROXY TCP6 ::ffff:192.0.2.7 ::1 10 20\r\n");
    CHECK(v1(SocketAddress{}, at("::1", 20)) == "PROXY UNKNOWN\r\n");
    // The longest line fits the buffer.
    const auto longest = v1(at("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
                            at("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535));
    CHECK(longest.size() == 104);
}

TEST_CASE("v2 encoder writes the exact TCP4 and TCP6 blocks")
{
    const std::string tcp4 = v2(at("192.0.2.7", 0x1234), at("10.0.0.1", 5432));
    const std::string expected4 = kSig + std::string("\x21\x11\x00\x0c\xc0\x00\x02\x07\x0a\x00\x00\x01\x12\x34\x15\x38", 16);
    CHECK(tcp4 == expected4);

    const std::string tcp6 = v2(at("2001:db8::7", 80), at("::1", 443));
    std::string expected6 = kSig + std::string("\x21\x21\x00\x24", 4);
    expected6 += std::string("\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07", 16);
    expected6 += std::string("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
    expected6 += std::string("\x00\x50\x01\xbb", 4);
    CHECK(tcp6 == expected6);
    CHECK(tcp6.size() == 52);

    CHECK(v2(SocketAddress{}, SocketAddress{}) == kSig + std::string("\x21\x00\x00\x00", 4));
}

TEST_CASE("encoded headers parse back to the same addresses")
{
    for (const auto& [s, d] : {std::pair{at("192.0.2.7", 51234), at("10.0.0.1", 5432)},
                               std::pair{at("2001:db8::7", 1), at("::1", 65535)}}) {
        for (const std::string& header : {v1(s, d), v2(s, d)}) {
            ProxyParse p = parse_proxy_header(header + "trailing client bytes");
            REQUIRE(p.status == Status::Done);
            CHECK(p.header.length == header.size());
            CHECK_FALSE(p.header.local);
            CHECK(p.header.source == s);
            CHECK(p.header.destination == d);
        }
    }
}

TEST_CASE("every proper prefix of a valid header needs more bytes")
{
    const auto s = at("2001:db8::7", 4000);
    const auto d = at("2001:db8::1", 5432);
    for (const std::string& header : {v1(s, d), v2(s, d), std::string("PROXY UNKNOWN\r\n")}) {
        for (std::size_t n = 0; n < header.size(); ++n)
            CHECK(parse_proxy_header(header.substr(0, n)).status == Status::NeedMore);
        CHECK(parse_proxy_header(header).status == Status::Done);
    }
}

TEST_CASE("v1 UNKNOWN and v2 LOCAL keep the real peer")
{
    ProxyParse unknown = parse_proxy_header("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET");
    REQUIRE(unknown.status == Status::Done);
    CHECK(unknown.header.local);
    CHECK(unknown.header.version == 1);
    CHECK(unknown.header.length == 35);

    // LOCAL with TCP4 addresses present: they are skipped, not used.
    std::string local = kSig + std::string("\x20\x11\x00\x0c", 4) + std::string(12, '\x01');
    ProxyParse p = parse_proxy_header(local);
    REQUIRE(p.status == Status::Done);
    CHECK(p.header.local);
    CHECK(p.header.version == 2);
    CHECK(p.header.length == 28);

    // PROXY with family UNSPEC: also no client announced.
    ProxyParse unspec = parse_proxy_header(kSig + std::string("\x21\x00\x00\x00", 4));
    REQUIRE(unspec.status == Status::Done);
    CHECK(unspec.header.local);
    CHECK(unspec.header.length == 16);
}

TEST_CASE("v2 TLVs after the addresses are skipped")
{
    std::string header = kSig + std::string("\x21\x11\x00\x14\x7f\x00\x00\x02\x7f\x00\x00\x01\x00\x50\x01\xbb", 16)
        + std::string("\x04\x00\x05hello", 8);  // a NOOP TLV
    REQUIRE(header.size() == 36);
    ProxyParse p = parse_proxy_header(header + "X");
    REQUIRE(p.status == Status::Done);
    CHECK(p.header.length == 36);
    CHECK(p.header.source == at("127.0.0.2", 80));
    CHECK(p.header.destination == at("127.0.0.1", 443));
}

TEST_CASE("malformed headers are errors with a reason")
{
    const char* bad_v1[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 ::2 1 2\r\n",
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 1.2.3.4\n",
        "PROXY \r\n",
        "PROXYTCP4",
    };
    for (const char* text : bad_v1) {
        INFO(text);
        ProxyParse p = parse_proxy_header(text);
        CHECK(p.status == Status::Error);
        CHECK_FALSE(p.error.empty());
    }
    // No CRLF within 107 bytes: refused at once, without waiting for more.
    CHECK(parse_proxy_header("PROXY UNKNOWN " + std::string(91, 'x')).status == Status::NeedMore);
    CHECK(parse_proxy_header("PROXY UNKNOWN " + std::string(92, 'x')).status == Status::Error);
    CHECK(parse_proxy_header("PROXY UNKNOWN " + std::string(91, 'x') + "\r\n").status == Status::Done);
    CHECK(parse_proxy_header("PROXY UNKNOWN " + std::string(92, 'x') + "\r\n").status == Status::Error);

    const std::string bad_v2[] = {
        kSig + std::string("\x11\x11\x00\x0c", 4),  // version 1
        kSig + std::string("\x22\x11\x00\x0c", 4),  // command 2
        kSig + std::string("\x21\x41\x00\x0c", 4),  // family 4
        kSig + std::string("\x21\x13\x00\x0c", 4),  // transport 3
        kSig + std::string("\x21\x11\x00\x0b", 4),  // too short for TCP4
        kSig + std::string("\x21\x21\x00\x0c", 4),  // too short for TCP6
        kSig + std::string("\x21\x11\x0f\xf1", 4),  // 16 + 4081 bytes: over the limit
        std::string("\r\n\r\n\0\r\nQUIZ", 12),
    };
    for (const std::string& text : bad_v2) {
        ProxyParse p = parse_proxy_header(text);
        CHECK(p.status == Status::Error);
        CHECK_FALSE(p.error.empty());
    }
    // The largest allowed header waits for its bytes.
    CHECK(parse_proxy_header(kSig + std::string("\x21\x11\x0f\xf0", 4)).status == Status::NeedMore);
}

TEST_CASE("random bytes never crash the parser and a Done length lies within the input")
{
    std::mt19937 rng(18);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int round = 0; round < 20000; ++round) {
        std::string input;
        // Start from a valid prefix half of the time, so deep branches are reached.
        if (round % 2 == 0)
            input = round % 4 == 0 ? kSig + std::string(1, '\x21') : std::string("PROXY TCP4 ");
        const int extra = byte(rng) % 64;
        for (int i = 0; i < extra; ++i)
            input += static_cast<char>(byte(rng));
        ProxyParse p = parse_proxy_header(input);
        if (p.status == Status::Done)
            REQUIRE(p.header.length <= input.size());
        if (p.status == Status::Error)
            REQUIRE_FALSE(p.error.empty());
    }
}
