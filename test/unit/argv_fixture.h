// Builds a writable argc/argv for the tools' option parsers in unit tests.
#pragma once

#include <string>
#include <vector>

namespace sluice::test {

// Owns the argv strings of one parse call; argv()[0] is "prog".
struct Argv {
    explicit Argv(const std::vector<const char*>& words)
    {
        storage.emplace_back("prog");
        for (const char* w : words)
            storage.emplace_back(w);
        for (auto& s : storage)
            pointers.push_back(s.data());
    }
    int argc() const { return static_cast<int>(pointers.size()); }
    char** argv() { return pointers.data(); }
    std::vector<std::string> storage;
    std::vector<char*> pointers;
};

} // namespace sluice::test
