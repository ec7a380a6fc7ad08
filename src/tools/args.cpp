#include "args.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

namespace sluice::tools {

namespace {

// Splits "12.5ms" into the number and the unit text. Only plain decimals:
// no sign, no exponent.
bool split_number(std::string_view text, double& number, std::string_view& unit)
{
    if (text.empty() || !((text[0] >= '0' && text[0] <= '9') || text[0] == '.'))
        return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number, std::chars_format::fixed);
    if (ec != std::errc{})
        return false;
    unit = text.substr(static_cast<std::size_t>(end - text.data()));
    return true;
}

} // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text)
{
    double number = 0;
    std::string_view unit;
    if (!split_number(text, number, unit))
        return std::nullopt;
    double scale = 0;
    if (unit == "ns")
        scale = 1;
    else if (unit == "us")
        scale = 1e3;
    else if (unit == "ms")
        scale = 1e6;
    else if (unit == "s")
        scale = 1e9;
    else if (unit == "m")
        scale = 60e9;
    else if (unit == "h")
        scale = 3600e9;
    else
        return std::nullopt;
    double ns = number * scale;
    // Anything near the int64 limit (292 years) is a typo, not a duration.
    if (!std::isfinite(ns) || ns > 1e18)
        return std::nullopt;
    return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(ns)));
}

std::optional<std::uint64_t> parse_size(std::string_view text)
{
    std::uint64_t number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc{} || end == text.data())
        return std::nullopt;
    std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    unsigned shift = 0;
    if (unit.empty() || unit == "B")
        shift = 0;
    else if (unit == "k" || unit == "K" || unit == "KiB")
        shift = 10;
    else if (unit == "M" || unit == "MiB")
        shift = 20;
    else if (unit == "G" || unit == "GiB")
        shift = 30;
    else
        return std::nullopt;
    if (number > (std::numeric_limits<std::uint64_t>::max() >> shift))
        return std::nullopt;
    return number << shift;
}

std::optional<std::uint64_t> parse_count(std::string_view text, std::uint64_t min, std::uint64_t max)
{
    std::uint64_t number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc{} || end == text.data())
        return std::nullopt;
    std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    std::uint64_t scale = 1;
    if (unit == "k")
        scale = 1000;
    else if (unit == "M")
        scale = 1000000;
    else if (!unit.empty())
        return std::nullopt;
    if (number > std::numeric_limits<std::uint64_t>::max() / scale)
        return std::nullopt;
    number *= scale;
    if (number < min || number > max)
        return std::nullopt;
    return number;
}

std::string_view ArgCursor::next_flag()
{
    std::string_view arg(argv_[next_++]);
    inline_value_.reset();
    if (arg.starts_with("--")) {
        if (auto eq = arg.find('='); eq != std::string_view::npos) {
            inline_value_ = arg.substr(eq + 1);
            return arg.substr(0, eq);
        }
    }
    return arg;
}

std::optional<std::string_view> ArgCursor::value()
{
    if (inline_value_)
        return std::exchange(inline_value_, std::nullopt);
    if (next_ >= argc_)
        return std::nullopt;
    return std::string_view(argv_[next_++]);
}

std::string missing_value_message(std::string_view flag) { return fmt::format("{} needs a value", flag); }

std::string bad_value_message(std::string_view flag, std::string_view value, std::string_view expected)
{
    return fmt::format("{}: expected {}, got \"{}\"", flag, expected, value);
}

} // namespace sluice::tools
