// Fuzz target: parse_admin_command, which reads every line a client writes to
// the admin socket (AdminServer hands it one line without its newline).
//
// Properties: a line gives a command or an error, never both; a command to a
// backend names a non-empty POOL without "/" and a non-empty BACKEND, both
// single words, and a weight in 0..256; an error reply stays one line.
#include "fuzz_check.h"

#include "sluice/admin.h"

#include <string>

namespace {

// One word as the parser splits them (the server has already cut the newline).
bool is_word(std::string_view text)
{
    return !text.empty() && text.find_first_of(" \t\r") == std::string_view::npos;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view line = sluice::fuzz::text_of(data, size);
    const sluice::AdminParseResult result = sluice::parse_admin_command(line);

    FUZZ_CHECK(result.command.has_value() != !result.error.empty());
    if (!result.command) {
        if (line.find('\n') == std::string_view::npos)
            FUZZ_CHECK(result.error.find('\n') == std::string::npos);
        return 0;
    }
    using Kind = sluice::AdminCommand::Kind;
    const sluice::AdminCommand& command = *result.command;
    if (command.kind == Kind::SetState || command.kind == Kind::SetWeight) {
        FUZZ_CHECK(is_word(command.pool) && command.pool.find('/') == std::string::npos);
        FUZZ_CHECK(is_word(command.backend));
        FUZZ_CHECK(line.find(command.pool + "/" + command.backend) != std::string_view::npos);
    }
    if (command.kind == Kind::SetWeight)
        FUZZ_CHECK(command.weight >= 0 && command.weight <= 256);
    return 0;
}
