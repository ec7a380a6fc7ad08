// Admin commands: one line of the admin protocol parsed into an AdminCommand.
// Pure; the server (admin.h) executes them, admin_render.h formats replies.
#pragma once

#include "sluice/backend_table.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

struct AdminCommand {
    enum class Kind : std::uint8_t {
        Help, ShowServers, ShowStat, ShowSessions, SetState, SetWeight, ShutdownSessions, Reload
    };
    Kind kind = Kind::Help;
    bool json = false;
    std::string pool;      // set server, shutdown sessions: POOL of POOL/BACKEND
    std::string backend;   // set server, shutdown sessions: BACKEND (a name or an address)
    AdminState state = AdminState::Ready;
    int weight = 0;
};

struct AdminParseResult {
    std::optional<AdminCommand> command;
    std::string error;  // set when command is empty: the text after "error: "
};

// Parses one command line (without its newline). Pure.
AdminParseResult parse_admin_command(std::string_view line);

// The reply to `help`, without the terminating empty line. Pure.
std::string admin_help_text();

} // namespace sluice
