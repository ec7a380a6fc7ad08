// The pure parts of name resolution: which questions a config asks, how
// answers become backends (apply_answers), and TTLs read from a raw reply.
// The resolver itself is tested against a real dnsmasq in
// test/integration/dns_test.cpp.
#include "sluice/name_resolver.h"

#include <catch2/catch.hpp>

using namespace sluice;

namespace {

Config config_of(const std::string& pools)
{
    ConfigResult result = parse_config("[[listeners]]\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n" + pools, "x.toml");
    INFO((result.errors.empty() ? "" : result.errors[0].to_string()));
    REQUIRE(result.ok());
    return *result.config;
}

SocketAddress ip(const std::string& text)
{
    return *SocketAddress::parse(text + ":0");
}

} // namespace

TEST_CASE("questions_of lists backend names, discover names and SRV owners, once each")
{
    Config config = config_of(R"([pools.p]
backends = [{ address = "db.internal:5432" }, { address = "db.internal:5433" }, { address = "10.0.0.1:1" }]
[pools.q]
discover = { srv = "_pg._tcp.svc" }
[pools.r]
discover = { name = "many.internal", port = 6379 }
)");
    DnsQuestions q = questions_of(config);
    CHECK(q.names == std::set<std::string>{"db.internal", "many.internal"});
    CHECK(q.srv == std::set<std::string>{"_pg._tcp.svc"});
}

TEST_CASE("a name backend takes the first sorted address of its answer, with its own port")
{
    Config base = config_of("[pools.p]\nbackends = [{ address = \"db.internal:5432\" }, { address = \"gone.internal:1\" }]\n");
    DnsAnswers answers;
    answers.names["db.internal"] = NameAnswer{NameStatus::Resolved, {ip("10.0.0.5"), ip("10.0.0.7")}};
    answers.names["gone.internal"] = NameAnswer{NameStatus::NxDomain, {}};
    Config applied = apply_answers(base, answers);
    const auto& backends = applied.pools[0].backends;
    REQUIRE(backends.size() == 2);
    CHECK(backends[0].address.to_string() == "10.0.0.5:5432");
    CHECK(backends[0].usable_address());
    CHECK(backends[0].identity() == "db.internal:5432");  // the slot follows the name, not the IP
    CHECK(backends[1].status == NameStatus::NxDomain);
    CHECK_FALSE(backends[1].usable_address());
    // The base is untouched: the next answer applies to the file's config again.
    CHECK(base.pools[0].backends[0].status == NameStatus::Pending);
}

TEST_CASE("a name not answered yet is pending")
{
    Config applied = apply_answers(config_of("[pools.p]\nbackends = [{ address = \"db.internal:5432\" }]\n"), {});
    CHECK(applied.pools[0].backends[0].status == NameStatus::Pending);
}

TEST_CASE("SRV targets become backends: port and weight from the record, higher priorities are backups")
{
    Config base = config_of("[pools.p]\ndiscover = { srv = \"_pg._tcp.svc\" }\nbackends = [{ address = \"a.svc:5432\" }]\n");
    DnsAnswers answers;
    answers.srv["_pg._tcp.svc"] = SrvAnswer{NameStatus::Resolved,
                                            {{"a.svc", 5432, 10, 5}, {"b.svc", 5433, 10, 0}, {"c.svc", 5432, 20, 300}}};
    answers.names["a.svc"] = NameAnswer{NameStatus::Resolved, {ip("10.0.0.1")}};
    answers.names["b.svc"] = NameAnswer{NameStatus::Resolved, {ip("10.0.0.2")}};
    Config applied = apply_answers(base, answers);
    const auto& backends = applied.pools[0].backends;
    REQUIRE(backends.size() == 3);  // a.svc:5432 is listed already: not added twice
    CHECK(backends[0].name == "a.svc:5432");
    CHECK(backends[1].name == "b.svc:5433");
    CHECK(backends[1].address.to_string() == "10.0.0.2:5433");
    CHECK(backends[1].weight == 1);  // SRV weight 0 counts as 1
    CHECK_FALSE(backends[1].backup);
    CHECK(backends[2].name == "c.svc:5432");
    CHECK(backends[2].weight == 256);  // clamped
    CHECK(backends[2].backup);
    CHECK(backends[2].status == NameStatus::Pending);  // its A record has not come yet
}

TEST_CASE("an SRV record with no targets leaves only the listed backends")
{
    Config base = config_of("[pools.p]\ndiscover = { srv = \"_pg._tcp.svc\" }\n");
    DnsAnswers answers;
    answers.srv["_pg._tcp.svc"] = SrvAnswer{NameStatus::NxDomain, {}};
    CHECK(apply_answers(base, answers).pools[0].backends.empty());
}

TEST_CASE("name discovery gives one backend per address, named ip:port")
{
    Config base = config_of("[pools.p]\ndiscover = { name = \"many.internal\", port = 6379, weight = 4 }\n");
    DnsAnswers answers;
    answers.names["many.internal"] = NameAnswer{NameStatus::Resolved, {ip("10.0.0.1"), ip("[fd00::1]")}};
    const Config applied = apply_answers(base, answers);  // kept: backends refers into it
    const auto& backends = applied.pools[0].backends;
    REQUIRE(backends.size() == 2);
    CHECK(backends[0].name == "10.0.0.1:6379");
    CHECK(backends[1].name == "[fd00::1]:6379");
    CHECK(backends[1].weight == 4);
    CHECK(backends[1].host.empty());
}

TEST_CASE("min_answer_ttl reads the smallest TTL of the answer section")
{
    // Header: id 1, flags 0x8180, 1 question, 2 answers. Question: "a." SRV IN.
    // Answers: compressed name (pointer to 12), type SRV, class IN, ttl, rdlength 0.
    std::vector<unsigned char> reply{0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0, 1, 'a', 0, 0, 33, 0, 1};
    auto answer = [&](std::uint32_t ttl) {
        std::vector<unsigned char> rr{0xc0, 12, 0, 33, 0, 1, static_cast<unsigned char>(ttl >> 24),
                                      static_cast<unsigned char>(ttl >> 16), static_cast<unsigned char>(ttl >> 8),
                                      static_cast<unsigned char>(ttl), 0, 0};
        reply.insert(reply.end(), rr.begin(), rr.end());
    };
    answer(300);
    answer(70000);
    CHECK(min_answer_ttl(reply.data(), static_cast<int>(reply.size())) == 300u);
    // Cut short: malformed, no TTL.
    CHECK_FALSE(min_answer_ttl(reply.data(), static_cast<int>(reply.size()) - 3));
    CHECK_FALSE(min_answer_ttl(reply.data(), 5));
}

TEST_CASE("dns_name_problem accepts host and SRV names and rejects what DNS cannot hold")
{
    CHECK_FALSE(dns_name_problem("db.internal"));
    CHECK_FALSE(dns_name_problem("_pg._tcp.db.service.consul"));
    CHECK_FALSE(dns_name_problem("db.internal."));
    CHECK_FALSE(dns_name_problem("localhost"));
    CHECK(dns_name_problem(""));
    CHECK(dns_name_problem("a..b"));
    CHECK(dns_name_problem(std::string(64, 'a') + ".b"));
    std::string long_name;
    for (int i = 0; i < 5; ++i)
        long_name += std::string(60, 'a') + ".";
    CHECK(*dns_name_problem(long_name + "b") == "is 306 characters long, expected a DNS name of at most 253");
    CHECK(dns_name_problem("db-.internal"));
    CHECK(dns_name_problem("db internal"));
    CHECK(dns_name_problem("1.2.3.400"));
}
