#include "sluice/admin.h"

#include <catch2/catch.hpp>

using namespace sluice;

namespace {

AdminCommand parsed(std::string_view line)
{
    AdminParseResult r = parse_admin_command(line);
    INFO(r.error);
    REQUIRE(r.command);
    return *r.command;
}

std::string error_of(std::string_view line)
{
    AdminParseResult r = parse_admin_command(line);
    REQUIRE_FALSE(r.command);
    return r.error;
}

} // namespace

TEST_CASE("admin parser reads every command")
{
    CHECK(parsed("help").kind == AdminCommand::Kind::Help);
    CHECK(parsed("show servers").kind == AdminCommand::Kind::ShowServers);
    CHECK(parsed("  show   stat \r").kind == AdminCommand::Kind::ShowStat);
    CHECK(parsed("show sessions").kind == AdminCommand::Kind::ShowSessions);
    CHECK(parsed("reload").kind == AdminCommand::Kind::Reload);

    AdminCommand drain = parsed("set server pg/pg-a state drain");
    CHECK(drain.kind == AdminCommand::Kind::SetState);
    CHECK(drain.pool == "pg");
    CHECK(drain.backend == "pg-a");
    CHECK(drain.state == AdminState::Drain);
    CHECK(parsed("set server pg/10.0.0.1:5432 state maint").backend == "10.0.0.1:5432");
    CHECK(parsed("set server pg/a state maintenance").state == AdminState::Maint);

    AdminCommand weight = parsed("set server pg/a weight 0");
    CHECK(weight.kind == AdminCommand::Kind::SetWeight);
    CHECK(weight.weight == 0);
    CHECK(parsed("set server pg/a weight 256").weight == 256);
}

TEST_CASE("admin parser takes json as the first word, or the last of a show command")
{
    CHECK(parsed("json show servers").json);
    CHECK(parsed("show servers json").json);
    CHECK(parsed("json reload").json);
    CHECK(parsed("json set server p/a state ready").json);
    CHECK_FALSE(parsed("show servers").json);
}

TEST_CASE("admin parser names what is wrong with a bad line")
{
    CHECK(error_of("foo") == R"(unknown command "foo", try "help")");
    CHECK(error_of("help me") == R"(unknown command "help me", try "help")");
    CHECK(error_of("json") == R"(empty command, try "help")");
    CHECK(error_of("show") == "show what? expected show servers, show stat or show sessions");
    CHECK(error_of("show servers extra") == R"(unexpected "extra" after "show servers")");
    CHECK(error_of("set server p/a state up") == R"(unknown state "up", expected ready, drain or maint)");
    CHECK(error_of("set server p/a weight 257") == R"(weight "257" is not an integer from 0 to 256)");
    CHECK(error_of("set server p/a weight -1") == R"(weight "-1" is not an integer from 0 to 256)");
    CHECK(error_of("set server p/a weight 3x") == R"(weight "3x" is not an integer from 0 to 256)");
    CHECK(error_of("set server p/ state ready") == R"(expected POOL/BACKEND, got "p/")");
    CHECK(error_of("set server /a state ready") == R"(expected POOL/BACKEND, got "/a")");
    CHECK(error_of("set server p/a colour red") == R"(unknown field "colour", expected state or weight)");
    CHECK(error_of("set server p/a state").rfind("usage: set server POOL/BACKEND", 0) == 0);
    CHECK(error_of("set").rfind("usage: set server POOL/BACKEND", 0) == 0);
    CHECK(error_of("set backend p/a state ready") == R"(unknown command "set backend p/a state ready", try "help")");
}

TEST_CASE("admin renders servers as an aligned table and as one line of JSON")
{
    StatsSnapshot snap;
    BackendSnapshot a;
    a.pool = "pg";
    a.name = "pg-a";
    a.address = "10.0.0.1:5432";
    a.active = 2;
    a.total = 10;
    a.weight = 3;
    BackendSnapshot b = a;
    b.name = "pg-b";
    b.health = Health::Down;
    b.why = "connection refused";
    b.admin = AdminState::Maint;
    b.check = "postgres";
    b.checked = true;
    b.check_passed = false;
    b.verdict = "replica (pg_is_in_recovery = true)";
    b.role = "replica";
    b.check_seconds = 0.0123;
    snap.backends = {a, b};
    CHECK(render_servers(snap, false)
          == "pool  backend  address        state  health  why                 active  total  failures  weight  maxconn  "
             "check     took  last_check\n"
             "pg    pg-a     10.0.0.1:5432  ready  up      -                   2       10     0         3       -        "
             "-         -     -\n"
             "pg    pg-b     10.0.0.1:5432  maint  down    connection refused  2       10     0         3       -        "
             "postgres  12ms  fail: replica (pg_is_in_recovery = true)");
    CHECK(render_servers(snap, true).find(R"("check":"postgres","check_passed":false,)"
                                          R"x("verdict":"replica (pg_is_in_recovery = true)","role":"replica",)x"
                                          R"("check_seconds":0.012300})")
          != std::string::npos);
    std::string json = render_servers(snap, true);
    CHECK(json.rfind(R"({"servers":[{"pool":"pg","backend":"pg-a","address":"10.0.0.1:5432","backup":false,)"
                     R"("state":"ready","health":"up","why":"-","active":2,"total":10,"failures":0,"weight":3,)",
                     0)
          == 0);
    CHECK(json.find('\n') == std::string::npos);
}

TEST_CASE("json_quote escapes quotes, backslashes and control characters")
{
    CHECK(json_quote("a\"b\\c\nd\x01") == R"("a\"b\\c\nd\u0001")");
}

TEST_CASE("json_quote keeps valid UTF-8 and replaces bytes that are not, so a reply stays valid JSON")
{
    CHECK(json_quote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    CHECK(json_quote("\xff/x") == R"("\ufffd/x")");
    CHECK(json_quote("a\xc3") == R"("a\ufffd")");             // cut short
    CHECK(json_quote("\xc0\xaf") == R"("\ufffd\ufffd")");     // overlong '/'
    CHECK(json_quote("\xed\xa0\x80") == R"("\ufffd\ufffd\ufffd")");  // a surrogate
}

TEST_CASE("show sessions lists a UDP flow beside a TCP session, with a protocol column")
{
    std::vector<sluice::SessionInfo> sessions(2);
    sessions[0] = {0, "pg", "tcp", "10.0.0.5:41000", "pg/a", 2.5, 10, 20, "established"};
    sessions[1] = {1, "dns", "udp", "10.0.0.6:53000", "dns/b", 0.25, 30, 90, "active"};
    std::string text = sluice::render_sessions(sessions, false);
    INFO(text);
    CHECK(text.rfind("worker  listener  client          backend  age   bytes_in  bytes_out  state        protocol\n", 0) == 0);
    CHECK(text.find("\n0       pg        10.0.0.5:41000  pg/a     2.5s  10        20         established  tcp\n")
          != std::string::npos);
    CHECK(text.find("\n1       dns       10.0.0.6:53000  dns/b    0.2s  30        90         active       udp") != std::string::npos);
    std::string json = sluice::render_sessions(sessions, true);
    CHECK(json.find(R"("state":"established","protocol":"tcp"})") != std::string::npos);
    CHECK(json.find(R"("state":"active","protocol":"udp"})") != std::string::npos);
}
