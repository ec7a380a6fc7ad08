#include "sluice/http_request.h"

#include <algorithm>
#include <charconv>

namespace sluice {

namespace {

using Status = HttpRequestParse::Status;

// RFC 9110 5.6.2: tchar.
constexpr bool is_token_char(unsigned char c) noexcept
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

constexpr bool is_token(std::string_view s) noexcept
{
    if (s.empty())
        return false;
    for (char c : s)
        if (!is_token_char(static_cast<unsigned char>(c)))
            return false;
    return true;
}

// Controls other than HT, and DEL. (A CR left inside a line is one: it was
// not followed by LF.)
constexpr bool has_control(std::string_view s) noexcept
{
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}

constexpr bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

HttpRequestParse bad(std::string_view reason) noexcept
{
    HttpRequestParse r;
    r.status = Status::Bad;
    r.reason = reason;
    return r;
}

// Fills method, target and version from the request line (without its line
// end); returns the reason it is refused, or an empty view.
std::string_view parse_request_line(std::string_view line, HttpRequestHead& head) noexcept
{
    if (has_control(line))
        return "control character in the request line";
    std::string_view words[3];
    std::size_t count = 0;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_blank(line[i]))
            ++i;
        const std::size_t start = i;
        while (i < line.size() && !is_blank(line[i]))
            ++i;
        if (i == start)
            break;
        if (count == 3)
            return "request line is not METHOD TARGET VERSION";
        words[count++] = line.substr(start, i - start);
    }
    if (count == 0)
        return "empty request line";
    if (count != 3)
        return "request line is not METHOD TARGET VERSION";
    if (!is_token(words[0]))
        return "method is not a token";
    for (char c : words[1])
        if (static_cast<unsigned char>(c) >= 0x80)
            return "request target has a byte that is not ASCII";
    const std::string_view version = words[2];
    if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9')
        return "version is not HTTP/1.x";
    head.method = words[0];
    head.target = words[1];
    head.version = version;
    return {};
}

std::string_view check_field_line(std::string_view line) noexcept
{
    if (is_blank(line.front()))
        return "obsolete line folding in the header";
    if (has_control(line))
        return "control character in a header line";
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos)
        return "header line without a colon";
    if (!is_token(line.substr(0, colon)))
        return "header name is not a token";
    return {};
}

} // namespace

HttpRequestParse parse_http_request(std::string_view buffer, std::size_t max_head_size) noexcept
{
    HttpRequestParse result;
    HttpRequestHead& head = result.head;
    std::size_t pos = 0;
    std::size_t fields_start = 0;
    bool first = true;
    while (true) {
        const std::size_t lf = buffer.find('\n', pos);
        if (lf == std::string_view::npos) {
            if (buffer.size() >= max_head_size)
                return bad("request head too large");
            result.status = Status::Incomplete;
            return result;
        }
        if (lf >= max_head_size)
            return bad("request head too large");
        const std::size_t line_start = pos;
        std::string_view line = buffer.substr(line_start, lf - line_start);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        pos = lf + 1;
        if (first) {
            if (std::string_view reason = parse_request_line(line, head); !reason.empty())
                return bad(reason);
            first = false;
            fields_start = pos;
            continue;
        }
        if (line.empty()) {
            head.fields = buffer.substr(fields_start, line_start - fields_start);
            head.head_size = pos;
            result.status = Status::Complete;
            return result;
        }
        if (std::string_view reason = check_field_line(line); !reason.empty())
            return bad(reason);
    }
}

std::optional<std::string_view> http_field(std::string_view fields, std::string_view name) noexcept
{
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    std::size_t pos = 0;
    while (pos < fields.size()) {
        std::size_t end = fields.find('\n', pos);
        if (end == std::string_view::npos)
            end = fields.size();
        std::string_view line = fields.substr(pos, end - pos);
        pos = end + 1;
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos
            || !std::equal(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), name.begin(), name.end(),
                           [&](char a, char b) { return lower(a) == lower(b); }))
            continue;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && is_blank(value.front()))
            value.remove_prefix(1);
        while (!value.empty() && (is_blank(value.back()) || value.back() == '\r'))
            value.remove_suffix(1);
        return value;
    }
    return std::nullopt;
}

std::optional<std::size_t> http_content_length(std::string_view fields) noexcept
{
    if (http_field(fields, "transfer-encoding"))
        return std::nullopt;
    std::optional<std::string_view> value = http_field(fields, "content-length");
    if (!value)
        return 0;
    std::size_t length = 0;
    auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), length);
    if (value->empty() || ec != std::errc{} || end != value->data() + value->size())
        return std::nullopt;
    return length;
}

} // namespace sluice
