// The sluice command line (the contract in ARCHITECTURE.md):
//   sluice -c FILE [--check|-t]   sluice --version   sluice --help
#pragma once

#include <string>
#include <vector>

namespace sluice {

struct CommandLine {
    enum class Action { Run, Check, Version, Help, Error };
    Action action = Action::Run;
    std::string config_path;
    bool debug = false;
    std::string error;  // set for Action::Error: what was wrong
};

CommandLine parse_command_line(const std::vector<std::string>& args);

// The --help text.
std::string usage_text();

} // namespace sluice
