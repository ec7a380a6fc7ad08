// Command-line helpers shared by sluice-echo and sluice-bench: a cursor over
// "--flag value" / "--flag=value" arguments and parsers for the value kinds the
// tools take. Parsers return nullopt on bad input; the caller turns that into a
// message naming the flag (exit code 2).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::tools {

// "10s", "500ms", "250us", "2m", "1h", "1.5s". A unit is required, as in the
// config file. Negative values and overflow are rejected; "0s" is accepted.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

// A byte count: "64", "16k", "16K", "16KiB", "1M", "1MiB", "1G" (powers of 1024).
std::optional<std::uint64_t> parse_size(std::string_view text);

// A whole number in [min, max], with an optional "k" or "M" (powers of 1000),
// e.g. "50", "10k".
std::optional<std::uint64_t> parse_count(std::string_view text, std::uint64_t min, std::uint64_t max);

// Walks argv[1..]. Each step yields one flag and, on demand, its value, which is
// either the part after '=' or the next argument.
class ArgCursor {
public:
    ArgCursor(int argc, char** argv) : argc_(argc), argv_(argv) {}

    bool done() const noexcept { return next_ >= argc_; }
    // The next argument's flag part ("--listen" from "--listen=x"); arguments
    // that do not start with "--" are returned whole, for the caller to reject.
    std::string_view next_flag();
    // The current flag's value; nullopt when it has none (end of argv).
    std::optional<std::string_view> value();

private:
    int argc_;
    char** argv_;
    int next_ = 1;
    std::optional<std::string_view> inline_value_;
};

// Error texts, so every tool words them the same way.
std::string missing_value_message(std::string_view flag);
std::string bad_value_message(std::string_view flag, std::string_view value, std::string_view expected);

} // namespace sluice::tools
