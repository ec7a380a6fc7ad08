#include "sluice/cli.h"

namespace sluice {

CommandLine parse_command_line(const std::vector<std::string>& args)
{
    CommandLine cmd;
    bool check = false;
    auto fail = [&cmd](std::string message) {
        cmd.action = CommandLine::Action::Error;
        cmd.error = std::move(message);
        return cmd;
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "-h" || arg == "--help") {
            cmd.action = CommandLine::Action::Help;
            return cmd;
        }
        if (arg == "-V" || arg == "--version") {
            cmd.action = CommandLine::Action::Version;
            return cmd;
        }
        if (arg == "-t" || arg == "--check") {
            check = true;
        } else if (arg == "-d" || arg == "--debug") {
            cmd.debug = true;
        } else if (arg == "-c" || arg == "--config") {
            if (i + 1 >= args.size())
                return fail(arg + " needs a file name");
            cmd.config_path = args[++i];
        } else if (arg.rfind("--config=", 0) == 0) {
            cmd.config_path = arg.substr(9);
        } else {
            return fail("unknown option '" + arg + "'");
        }
    }
    if (cmd.config_path.empty())
        return fail("no configuration file: use -c FILE");
    cmd.action = check ? CommandLine::Action::Check : CommandLine::Action::Run;
    return cmd;
}

std::string usage_text()
{
    return "usage: sluice -c FILE [--check] [--debug]\n"
           "       sluice --version | --help\n"
           "\n"
           "  -c, --config FILE  the TOML configuration to run\n"
           "  -t, --check        validate FILE, print FILE:LINE:COL: problem for each error,\n"
           "                     exit 0 if valid and 1 if not; nothing is started\n"
           "  -d, --debug        log debug lines too\n"
           "  -V, --version      print the version\n"
           "  -h, --help         print this help\n"
           "\n"
           "signals: SIGHUP reloads FILE; SIGTERM/SIGINT drain sessions (up to\n"
           "drain_timeout) and exit 0; a second SIGTERM/SIGINT exits at once.\n";
}

} // namespace sluice
