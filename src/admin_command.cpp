#include "sluice/admin_command.h"

#include <charconv>
#include <fmt/format.h>
#include <vector>

namespace sluice {

// ---- parsing ------------------------------------------------------------------

namespace {

std::vector<std::string_view> split_words(std::string_view line)
{
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
            ++i;
        std::size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            ++i;
        if (i > start)
            words.push_back(line.substr(start, i - start));
    }
    return words;
}

std::string join(const std::vector<std::string_view>& words)
{
    std::string out;
    for (auto w : words)
        out += (out.empty() ? "" : " ") + std::string(w);
    return out;
}

AdminParseResult fail(std::string message) { return {std::nullopt, std::move(message)}; }

// Splits "POOL/BACKEND" into the command; false when it is not of that shape.
bool read_target(std::string_view target, AdminCommand& command)
{
    const auto slash = target.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == target.size())
        return false;
    command.pool = std::string(target.substr(0, slash));
    command.backend = std::string(target.substr(slash + 1));
    return true;
}

constexpr std::string_view kSetUsage = "usage: set server POOL/BACKEND state ready|drain|maint, or set server "
                                       "POOL/BACKEND weight N";

} // namespace

AdminParseResult parse_admin_command(std::string_view line)
{
    std::vector<std::string_view> words = split_words(line);
    AdminCommand command;
    if (!words.empty() && words.front() == "json") {
        command.json = true;
        words.erase(words.begin());
    }
    if (words.empty())
        return fail(R"(empty command, try "help")");
    const std::string_view verb = words[0];
    auto unknown = [&] { return fail(fmt::format(R"(unknown command "{}", try "help")", join(words))); };

    if (verb == "help" && words.size() == 1) {
        command.kind = AdminCommand::Kind::Help;
        return {command, {}};
    }
    if (verb == "reload" && words.size() == 1) {
        command.kind = AdminCommand::Kind::Reload;
        return {command, {}};
    }
    if (verb == "show") {
        if (words.size() < 2)
            return fail("show what? expected show servers, show stat or show sessions");
        const std::string_view what = words[1];
        if (what == "servers")
            command.kind = AdminCommand::Kind::ShowServers;
        else if (what == "stat" || what == "stats")
            command.kind = AdminCommand::Kind::ShowStat;
        else if (what == "sessions")
            command.kind = AdminCommand::Kind::ShowSessions;
        else
            return unknown();
        if (words.size() == 3 && words[2] == "json")
            command.json = true;
        else if (words.size() > 2)
            return fail(fmt::format(R"(unexpected "{}" after "show {}")", words[2], what));
        return {command, {}};
    }
    if (verb == "set") {
        if (words.size() < 2 || words[1] != "server")
            return words.size() < 2 ? fail(std::string(kSetUsage)) : unknown();
        if (words.size() != 5)
            return fail(std::string(kSetUsage));
        if (!read_target(words[2], command))
            return fail(fmt::format(R"(expected POOL/BACKEND, got "{}")", words[2]));
        const std::string_view field = words[3];
        const std::string_view value = words[4];
        if (field == "state") {
            std::optional<AdminState> state = parse_admin_state(value);
            if (!state)
                return fail(fmt::format(R"(unknown state "{}", expected ready, drain or maint)", value));
            command.kind = AdminCommand::Kind::SetState;
            command.state = *state;
            return {command, {}};
        }
        if (field == "weight") {
            int weight = -1;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), weight);
            if (ec != std::errc{} || end != value.data() + value.size() || weight < 0 || weight > 256)
                return fail(fmt::format(R"(weight "{}" is not an integer from 0 to 256)", value));
            command.kind = AdminCommand::Kind::SetWeight;
            command.weight = weight;
            return {command, {}};
        }
        return fail(fmt::format(R"(unknown field "{}", expected state or weight)", field));
    }
    if (verb == "shutdown") {
        constexpr std::string_view usage = "usage: shutdown sessions POOL/BACKEND";
        if (words.size() < 2 || words[1] != "sessions")
            return words.size() < 2 ? fail(std::string(usage)) : unknown();
        if (words.size() != 3)
            return fail(std::string(usage));
        if (!read_target(words[2], command))
            return fail(fmt::format(R"(expected POOL/BACKEND, got "{}")", words[2]));
        command.kind = AdminCommand::Kind::ShutdownSessions;
        return {command, {}};
    }
    return unknown();
}

std::string admin_help_text()
{
    return "commands:\n"
           "  help                                        this list\n"
           "  show servers                                backends: state, health and why, sessions, weight\n"
           "  show stat                                   counters per listener and per pool\n"
           "  show sessions                               open sessions: client, backend, age, bytes, state\n"
           "  set server POOL/BACKEND state ready|drain|maint\n"
           "                                              drain: no new sessions; maint: also pause checks\n"
           "  set server POOL/BACKEND weight N            N from 0 to 256; 0 takes no new sessions\n"
           "  shutdown sessions POOL/BACKEND              close the backend's open sessions now, both sides\n"
           "  reload                                      re-read the configuration file\n"
           "prefix a command with \"json\" for one line of JSON";
}

} // namespace sluice
