// Whether text is valid JSON, judged by an independent parser (Python's json
// module; python3 is installed by scripts/setup), so a test of our JSON
// writer does not grade its own homework.
#pragma once

#include <string>

namespace sluice::test {

// True when every non-empty line of `text` is one valid JSON value; else
// false, with Python's error in `error`.
bool json_lines_valid(const std::string& text, std::string* error = nullptr);

} // namespace sluice::test
