// JSON text helpers shared by the admin protocol and the load tools.
#pragma once

#include <string>
#include <string_view>

namespace sluice {

// `text` as a JSON string literal, quotes included; control characters escaped.
std::string json_quote(std::string_view text);

} // namespace sluice
