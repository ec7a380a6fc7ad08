// Fuzz target: the two value grammars of the config file, parse_duration and
// SocketAddress::parse (every listen, backend and metrics address), both fed
// the whole input.
//
// Properties: a duration equals what a plain 128-bit reading of the same
// "<digits><unit>..." terms gives, and is rejected exactly when that reading
// fails or passes INT64_MAX milliseconds; an address prints as text that
// parses back to the same address and prints the same again, and its IP and
// port rebuild it through from_ip.
#include "fuzz_check.h"

#include "sluice/addr.h"
#include "sluice/config.h"

#include <limits>
#include <optional>
#include <string>

namespace {

// The duration grammar, restated as simply as possible: no early overflow
// checks, just wide arithmetic and one comparison at the end.
std::optional<__int128> reference_duration_ms(std::string_view text)
{
    if (text == "0")
        return 0;
    if (text.empty())
        return std::nullopt;
    constexpr __int128 kMax = std::numeric_limits<std::int64_t>::max();
    __int128 total = 0;
    while (!text.empty()) {
        std::size_t digits = 0;
        __int128 number = 0;
        while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
            number = number * 10 + (text[digits] - '0');
            if (number > std::numeric_limits<std::uint64_t>::max())
                return std::nullopt;  // the real parser reads an uint64_t
            ++digits;
        }
        if (digits == 0)
            return std::nullopt;
        text.remove_prefix(digits);
        __int128 unit = 0;
        if (text.starts_with("ms"))
            unit = 1, text.remove_prefix(2);
        else if (text.starts_with("s"))
            unit = 1000, text.remove_prefix(1);
        else if (text.starts_with("m"))
            unit = 60'000, text.remove_prefix(1);
        else if (text.starts_with("h"))
            unit = 3'600'000, text.remove_prefix(1);
        else
            return std::nullopt;
        total += number * unit;
        if (total > kMax)
            return std::nullopt;
    }
    return total;
}

void check_duration(std::string_view text)
{
    const std::optional<sluice::Duration> parsed = sluice::parse_duration(text);
    const std::optional<__int128> expected = reference_duration_ms(text);
    FUZZ_CHECK(parsed.has_value() == expected.has_value());
    if (parsed)
        FUZZ_CHECK(parsed->count() == *expected);
}

void check_address(std::string_view text)
{
    const std::optional<sluice::SocketAddress> parsed = sluice::SocketAddress::parse(text);
    if (!parsed)
        return;
    FUZZ_CHECK(!parsed->empty());
    FUZZ_CHECK(parsed->family() == AF_INET || parsed->family() == AF_INET6);

    const std::string printed = parsed->to_string();
    const std::optional<sluice::SocketAddress> reparsed = sluice::SocketAddress::parse(printed);
    FUZZ_CHECK(reparsed.has_value());
    FUZZ_CHECK(*reparsed == *parsed);
    FUZZ_CHECK(reparsed->family() == parsed->family());
    FUZZ_CHECK(reparsed->to_string() == printed);
    FUZZ_CHECK(reparsed->full_hash() == parsed->full_hash());

    // The port is the text after the last ':', 1 to 5 digits and nothing else.
    const std::string_view port_text = text.substr(text.rfind(':') + 1);
    FUZZ_CHECK(!port_text.empty() && port_text.size() <= 5);
    unsigned port = 0;
    for (char c : port_text) {
        FUZZ_CHECK(c >= '0' && c <= '9');
        port = port * 10 + static_cast<unsigned>(c - '0');
    }
    FUZZ_CHECK(port == parsed->port());

    const std::optional<sluice::SocketAddress> rebuilt =
        sluice::SocketAddress::from_ip(parsed->ip_string(), parsed->port());
    FUZZ_CHECK(rebuilt.has_value() && *rebuilt == *parsed);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view text = sluice::fuzz::text_of(data, size);
    check_duration(text);
    check_address(text);
    return 0;
}
