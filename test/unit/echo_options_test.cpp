#include "echo_options.h"

#include "argv_fixture.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sluice::tools;
using sluice::test::Argv;

namespace {

EchoParseResult echo(const std::vector<const char*>& words)
{
    Argv a(words);
    return parse_echo_options(a.argc(), a.argv());
}

} // namespace

TEST_CASE("echo defaults to TCP echo on one thread with the bound address as its name")
{
    auto r = echo({"--listen", "127.0.0.1:0"});
    REQUIRE(r.error.empty());
    CHECK_FALSE(r.options.udp);
    CHECK(r.options.mode == EchoMode::Echo);
    CHECK(r.options.threads == 1);
    CHECK(r.options.name.empty());  // filled in with the bound address once bound
}

TEST_CASE("every bad echo argument is reported with the flag's name")
{
    const std::string long_name(kMaxEchoNameLength + 1, 'n');
    struct Case {
        std::vector<const char*> args;
        const char* flag;
    };
    const std::vector<Case> cases{
        {{}, "--listen"},
        {{"--listen", "nowhere"}, "--listen"},
        {{"--listen", "127.0.0.1:0", "--mode", "mirror"}, "--mode"},
        {{"--listen", "127.0.0.1:0", "--udp", "--mode", "source"}, "--mode"},
        {{"--listen", "127.0.0.1:0", "--threads", "0"}, "--threads"},
        {{"--listen", "127.0.0.1:0", "--name", long_name.c_str()}, "--name"},
        {{"--listen", "127.0.0.1:0", "--name"}, "--name"},
        {{"--listen", "127.0.0.1:0", "--verbose"}, "--verbose"},
    };
    for (const auto& c : cases) {
        auto r = echo(c.args);
        INFO(r.error);
        CHECK(r.error.find(c.flag) != std::string::npos);
    }
}

TEST_CASE("echo options are read in --flag value and --flag=value forms alike")
{
    auto r = echo({"--listen=127.0.0.1:0", "--udp", "--mode", "whoami", "--name=b1", "--threads", "2"});
    REQUIRE(r.error.empty());
    CHECK(r.options.udp);
    CHECK(r.options.mode == EchoMode::Whoami);
    CHECK(r.options.name == "b1");
    CHECK(r.options.threads == 2);
    CHECK(r.options.listen.to_string() == "127.0.0.1:0");
}
