#include "sluice/http_request.h"

#include <catch2/catch.hpp>

#include <string>

using namespace sluice;
using Status = HttpRequestParse::Status;

namespace {

std::string reason_of(std::string_view buffer, std::size_t max = 8192)
{
    HttpRequestParse r = parse_http_request(buffer, max);
    INFO(std::string(buffer));
    REQUIRE(r.status == Status::Bad);
    return std::string(r.reason);
}

} // namespace

TEST_CASE("http request parser reads the request line, the header fields and where the head ends")
{
    const std::string request = "GET /metrics?name=x HTTP/1.1\r\nHost: localhost:9100\r\nAccept: */*\r\n\r\nbody";
    HttpRequestParse r = parse_http_request(request);
    REQUIRE(r.status == Status::Complete);
    CHECK(r.head.method == "GET");
    CHECK(r.head.target == "/metrics?name=x");
    CHECK(r.head.version == "HTTP/1.1");
    CHECK(r.head.fields == "Host: localhost:9100\r\nAccept: */*\r\n");
    CHECK(r.head.head_size == request.size() - 4);
    CHECK(r.reason.empty());
}

TEST_CASE("http request parser accepts bare LF line ends, no header fields, and runs of blanks between words")
{
    HttpRequestParse r = parse_http_request("GET\t/metrics  HTTP/1.0\n\n");
    REQUIRE(r.status == Status::Complete);
    CHECK(r.head.method == "GET");
    CHECK(r.head.target == "/metrics");
    CHECK(r.head.version == "HTTP/1.0");
    CHECK(r.head.fields.empty());
    CHECK(r.head.head_size == 24);

    r = parse_http_request("POST /x HTTP/1.1\r\nContent-Length:0\n\r\n");
    REQUIRE(r.status == Status::Complete);
    CHECK(r.head.method == "POST");
    CHECK(r.head.fields == "Content-Length:0\n");
}

TEST_CASE("http request parser says incomplete for every prefix of a valid head")
{
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: a\r\nUser-Agent: Prometheus/2.45\r\n\r\n";
    for (std::size_t n = 0; n < request.size(); ++n) {
        INFO(n);
        CHECK(parse_http_request(std::string_view(request).substr(0, n)).status == Status::Incomplete);
    }
    CHECK(parse_http_request(request).status == Status::Complete);
}

TEST_CASE("http request parser refuses a bad request line as soon as that line is complete")
{
    CHECK(reason_of("\r\n") == "empty request line");
    CHECK(reason_of("GET /metrics\r\n") == "request line is not METHOD TARGET VERSION");
    CHECK(reason_of("GET /metrics HTTP/1.1 extra\r\n") == "request line is not METHOD TARGET VERSION");
    CHECK(reason_of("GET /metrics HTTP/2.0\r\n") == "version is not HTTP/1.x");
    CHECK(reason_of("GET /metrics HTTP/1.foo\r\n") == "version is not HTTP/1.x");
    CHECK(reason_of("GET /metrics http/1.1\r\n") == "version is not HTTP/1.x");
    CHECK(reason_of("G(T /metrics HTTP/1.1\r\n") == "method is not a token");
    CHECK(reason_of("GET /m\xc3\xa9trics HTTP/1.1\r\n") == "request target has a byte that is not ASCII");
    CHECK(reason_of(std::string("GET /me\0trics HTTP/1.1\r\n", 25)) == "control character in the request line");
    CHECK(reason_of("GET /metrics\rHTTP/1.1\r\n") == "control character in the request line");
}

TEST_CASE("http request parser refuses malformed header lines")
{
    CHECK(reason_of("GET / HTTP/1.1\r\nHost localhost\r\n") == "header line without a colon");
    CHECK(reason_of("GET / HTTP/1.1\r\nHost : localhost\r\n") == "header name is not a token");
    CHECK(reason_of("GET / HTTP/1.1\r\n: localhost\r\n") == "header name is not a token");
    CHECK(reason_of("GET / HTTP/1.1\r\nA: b\r\n folded\r\n") == "obsolete line folding in the header");
    CHECK(reason_of("GET / HTTP/1.1\r\nA: b\x01\r\n") == "control character in a header line");
    CHECK(reason_of("GET / HTTP/1.1\r\nA: b\rc\r\n") == "control character in a header line");
    // obs-text in a value is allowed (RFC 9110 5.5).
    CHECK(parse_http_request("GET / HTTP/1.1\r\nA: caf\xc3\xa9\r\n\r\n").status == Status::Complete);
}

TEST_CASE("http request parser refuses a head that does not fit the limit, and takes one that just fits")
{
    const std::string line = "GET / HTTP/1.1\r\n";
    const std::string exact = line + "\r\n";  // 18 bytes
    CHECK(parse_http_request(exact, exact.size()).status == Status::Complete);
    CHECK(reason_of(exact, exact.size() - 1) == "request head too large");
    // Without a line end, the limit alone decides.
    CHECK(parse_http_request(std::string(99, 'G'), 100).status == Status::Incomplete);
    CHECK(reason_of(std::string(100, 'G'), 100) == "request head too large");
    CHECK(reason_of(line + "X-Long: " + std::string(9000, 'a')) == "request head too large");
}

TEST_CASE("http_field finds a header field ignoring the name's case, trimmed")
{
    const std::string_view fields = "Host: x\r\nauthorization:   Bearer abc \t\r\nContent-Length: 12\n";
    CHECK(sluice::http_field(fields, "Authorization") == std::optional<std::string_view>("Bearer abc"));
    CHECK(sluice::http_field(fields, "content-length") == std::optional<std::string_view>("12"));
    CHECK(sluice::http_field(fields, "host") == std::optional<std::string_view>("x"));
    CHECK_FALSE(sluice::http_field(fields, "hos"));
    CHECK_FALSE(sluice::http_field(fields, "cookie"));
    CHECK_FALSE(sluice::http_field("", "host"));
}

TEST_CASE("http_content_length is 0 without the field and refuses junk and Transfer-Encoding")
{
    CHECK(sluice::http_content_length("Host: x\r\n") == std::optional<std::size_t>(0));
    CHECK(sluice::http_content_length("Content-Length: 42\r\n") == std::optional<std::size_t>(42));
    CHECK_FALSE(sluice::http_content_length("Content-Length: 4x\r\n"));
    CHECK_FALSE(sluice::http_content_length("Content-Length: -1\r\n"));
    CHECK_FALSE(sluice::http_content_length("Content-Length:\r\n"));
    CHECK_FALSE(sluice::http_content_length("Content-Length: 99999999999999999999999\r\n"));
    CHECK_FALSE(sluice::http_content_length("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"));
}
