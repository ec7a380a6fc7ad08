// Fuzz target: parse_http_request, which reads every byte an HTTP client sends
// to the metrics address before sluice answers.
//
// Properties: a complete head lies within the input and within the limit, its
// views point into the input in order (method, target, version, fields), the
// method is a non-empty token and the version "HTTP/1.<digit>"; a refusal says
// why; and a head judged complete or bad does not change when more bytes
// follow it (a line is judged once it is complete). On a complete head, the
// dashboard's readers of it (dashboard.h): a header field's value lies within
// the fields, and an action either is a command or says why not.
#include "fuzz_check.h"

#include "sluice/dashboard.h"
#include "sluice/http_request.h"

#include <string>

namespace {

constexpr std::size_t kLimit = 8192;  // AdminServer::kMaxHttpRequest

bool inside(std::string_view part, std::string_view whole)
{
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using Status = sluice::HttpRequestParse::Status;
    const std::string_view input = sluice::fuzz::text_of(data, size);
    const sluice::HttpRequestParse parsed = sluice::parse_http_request(input, kLimit);

    if (parsed.status == Status::Bad)
        FUZZ_CHECK(!parsed.reason.empty());
    if (parsed.status == Status::Incomplete)
        FUZZ_CHECK(input.size() <= kLimit);
    if (parsed.status == Status::Complete) {
        const sluice::HttpRequestHead& head = parsed.head;
        FUZZ_CHECK(head.head_size > 0 && head.head_size <= input.size() && head.head_size <= kLimit);
        const std::string_view whole = input.substr(0, head.head_size);
        FUZZ_CHECK(inside(head.method, whole) && inside(head.target, whole) && inside(head.version, whole)
                   && inside(head.fields, whole));
        FUZZ_CHECK(!head.method.empty() && !head.target.empty());
        FUZZ_CHECK(head.method.data() < head.target.data() && head.target.data() < head.version.data());
        FUZZ_CHECK(head.version.size() == 8 && head.version.substr(0, 7) == "HTTP/1." && head.version[7] >= '0'
                   && head.version[7] <= '9');
        // Bytes after the head (a body, a pipelined request) change nothing.
        std::string longer(input);
        longer += "X-Trailing: junk\r\n";
        const sluice::HttpRequestParse again = sluice::parse_http_request(longer, kLimit + 64);
        FUZZ_CHECK(again.status == Status::Complete && again.head.head_size == head.head_size);
        if (std::optional<std::string_view> field = sluice::http_field(head.fields, "authorization"))
            FUZZ_CHECK(inside(*field, head.fields));
        (void)sluice::http_content_length(head.fields);
        (void)sluice::bearer_token_matches(head.fields, "token");
        const sluice::ServerAction action = sluice::parse_server_action(head.target, input.substr(head.head_size));
        FUZZ_CHECK(action.command ? action.error.empty() : !action.error.empty());
        if (action.command)
            FUZZ_CHECK(action.command->backend.find('/') == std::string::npos);
    }
    return 0;
}
