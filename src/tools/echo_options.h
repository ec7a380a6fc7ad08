// sluice-echo's options and their parsing.
#pragma once

#include "sluice/addr.h"

#include <cstddef>
#include <string>

namespace sluice::tools {

enum class EchoMode {
    Echo,    // send back every byte / datagram
    Whoami,  // TCP: "NAME\n" first, then echo; UDP: "NAME\n" + datagram
    Sink,    // read and discard
    Source,  // TCP only: write an endless stream as fast as the peer reads
};

struct EchoOptions {
    SocketAddress listen;
    std::string name;  // empty: the bound address, e.g. "127.0.0.1:40123"
    bool udp = false;
    EchoMode mode = EchoMode::Echo;
    unsigned threads = 1;
};

struct EchoParseResult {
    EchoOptions options;
    std::string error;  // non-empty: bad arguments, names the flag
    bool help = false;
};

inline constexpr std::size_t kMaxEchoNameLength = 1024;

EchoParseResult parse_echo_options(int argc, char** argv);
extern const char* const kEchoUsage;

} // namespace sluice::tools
