// The head of an HTTP/1.x request (request line and header fields), parsed
// from the bytes received so far. Pure and allocation-free, so it can be unit
// tested and fuzzed on its own; the metrics endpoint (admin.cpp) decides what
// to answer.
//
// Grammar (RFC 9112 section 2-5, with the leniencies it allows a server):
//   request-line = method SP request-target SP HTTP-version CRLF
//   field-line   = field-name ":" OWS field-value OWS CRLF
//   the head ends with an empty line.
// A bare LF is accepted wherever CRLF is (RFC 9112 2.2); words of the request
// line may be separated by runs of spaces or tabs. Refused, with a reason:
// a method that is not a token, a target with a control character or a space,
// a version other than "HTTP/1.<digit>", a field line without a token name
// right before its colon, an obsolete folded line (starting with SP or HT),
// a CR not followed by LF, a NUL or other control character in a line, and a
// head longer than the limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice {

struct HttpRequestHead {
    std::string_view method;   // "GET"
    std::string_view target;   // "/metrics?x=1", as sent
    std::string_view version;  // "HTTP/1.1"
    std::string_view fields;   // the field lines, each ending in CRLF or LF; may be empty
    std::size_t head_size = 0; // bytes of the head, the empty line included
};

struct HttpRequestParse {
    enum class Status : std::uint8_t {
        Incomplete,  // every complete line so far is valid; more bytes are needed
        Bad,         // not a valid request head: answer 400 and close
        Complete,    // `head` holds the request; its views point into the buffer
    };
    Status status = Status::Incomplete;
    std::string_view reason;  // Bad: why, a static string ("request line has no version")
    HttpRequestHead head;
};

// Parses the request head at the start of `buffer` (bytes after the head, a
// body or a pipelined request, are ignored). A line that is complete is
// judged at once, so a bad request line is refused before the rest arrives.
// When no complete head fits in `max_head_size` bytes the answer is Bad.
HttpRequestParse parse_http_request(std::string_view buffer, std::size_t max_head_size = 8192) noexcept;

// The value of the first field named `name` (compared ignoring case) in
// `fields` (HttpRequestHead::fields), without surrounding whitespace; nullopt
// when there is none.
std::optional<std::string_view> http_field(std::string_view fields, std::string_view name) noexcept;

// The Content-Length of a request: 0 when it has none; nullopt when the
// value is not a number, or a Transfer-Encoding (a chunked body, which no
// endpoint here takes) is present.
std::optional<std::size_t> http_content_length(std::string_view fields) noexcept;

} // namespace sluice
