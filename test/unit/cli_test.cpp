#include "sluice/cli.h"

#include <catch2/catch.hpp>

using sluice::CommandLine;
using sluice::parse_command_line;

TEST_CASE("-c FILE runs the file")
{
    CommandLine cmd = parse_command_line({"-c", "x.toml"});
    CHECK(cmd.action == CommandLine::Action::Run);
    CHECK(cmd.config_path == "x.toml");
}

TEST_CASE("--check and its alias -t validate only, in any order")
{
    CHECK(parse_command_line({"-c", "x.toml", "--check"}).action == CommandLine::Action::Check);
    CHECK(parse_command_line({"-t", "-c", "x.toml"}).action == CommandLine::Action::Check);
    CHECK(parse_command_line({"--config=x.toml", "-t"}).config_path == "x.toml");
}

TEST_CASE("--version and --help need no config")
{
    CHECK(parse_command_line({"--version"}).action == CommandLine::Action::Version);
    CHECK(parse_command_line({"-h"}).action == CommandLine::Action::Help);
}

TEST_CASE("a missing file name or an unknown option is an error that says which")
{
    CommandLine missing = parse_command_line({"-c"});
    CHECK(missing.action == CommandLine::Action::Error);
    CHECK(missing.error == "-c needs a file name");
    CommandLine unknown = parse_command_line({"-c", "x", "--frobnicate"});
    CHECK(unknown.action == CommandLine::Action::Error);
    CHECK(unknown.error == "unknown option '--frobnicate'");
    CHECK(parse_command_line({}).action == CommandLine::Action::Error);
}
