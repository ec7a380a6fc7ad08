// The dashboard's side of AdminServer: its routes on the metrics address and
// the history sample. Admin thread only, like the rest of AdminServer; what
// can be pure (the page, the JSON, parsing an action, the token compare) is
// in dashboard.cpp.
#include "sluice/admin.h"

#include "sluice/json.h"

#include <chrono>
#include <fmt/format.h>

namespace sluice {

namespace {

double wall_seconds()
{
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

// The page runs only its own inline script and talks only to this address.
constexpr std::string_view kPageHeaders =
    "Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n";
constexpr std::string_view kJsonHeaders =
    "Content-Type: application/json\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";

std::string json_result(bool ok, std::string_view message)
{
    return fmt::format("{{\"ok\":{},\"message\":{}}}\n", ok, json_quote(message));
}

} // namespace

bool AdminServer::is_dashboard_route(std::string_view target) noexcept
{
    const std::string_view path = target.substr(0, target.find('?'));
    return path == "/" || path == "/index.html" || path.starts_with("/api/");
}

AdminServer::HttpAnswer AdminServer::answer_dashboard(const HttpRequestHead& head, std::string_view body)
{
    const std::string_view path = head.target.substr(0, head.target.find('?'));
    auto error = [](std::string_view status, std::string_view message, std::string_view extra = {}) {
        return HttpAnswer{status, std::string(kJsonHeaders) + std::string(extra), json_result(false, message)};
    };
    if (path == "/" || path == "/index.html") {
        if (head.method != "GET")
            return error("405 Method Not Allowed", "only GET", "Allow: GET\r\n");
        return {"200 OK", std::string(kPageHeaders), std::string(dashboard_page())};
    }
    if (path == "/api/state") {
        if (head.method != "GET")
            return error("405 Method Not Allowed", "only GET", "Allow: GET\r\n");
        return {"200 OK", std::string(kJsonHeaders),
                render_dashboard_state(snapshot(), dashboard_, wall_seconds(), !runtime_->config.admin.token.empty())};
    }
    if (!path.starts_with("/api/servers/"))
        return error("404 Not Found", "try /, /api/state or /api/servers/POOL/NAME/state");
    if (head.method != "POST")
        return error("405 Method Not Allowed", "only POST", "Allow: POST\r\n");

    // Read-only unless a token is configured and this request carries it.
    const std::string& token = runtime_->config.admin.token;
    if (token.empty())
        return error("403 Forbidden", "actions are off: set [admin] token_file to allow them");
    if (!bearer_token_matches(head.fields, token))
        return error("403 Forbidden", "expected the header Authorization: Bearer TOKEN with the token of token_file");

    const std::optional<std::size_t> length = http_content_length(head.fields);
    if (!length)
        return error("411 Length Required", "expected a Content-Length (and no Transfer-Encoding)");
    if (*length > kMaxHttpBody)
        return error("413 Content Too Large", fmt::format("the body is over {} bytes", kMaxHttpBody));
    if (body.size() < *length)
        return error("400 Bad Request", "the body ended early");

    ServerAction action = parse_server_action(head.target, body);
    if (!action.command)
        return error(action.not_found ? "404 Not Found" : "400 Bad Request", action.error);
    std::string result = set_server(*action.command, "dashboard");
    if (result.starts_with("error: "))
        return error("404 Not Found", std::string_view(result).substr(7));
    return {"200 OK", std::string(kJsonHeaders), json_result(true, result)};
}

void AdminServer::on_dashboard_sample()
{
    const double now = loop_.now();
    dashboard_.sample(snapshot(), wall_seconds(), dashboard_sampled_at_ > 0 ? now - dashboard_sampled_at_ : 0);
    dashboard_sampled_at_ = now;
}

} // namespace sluice
