// CidrSet: a set of IPv4 and IPv6 prefixes ("10.0.0.0/8", "2001:db8::/32", or a
// bare address meaning one host), asked "is this address inside any of them?".
//
// Used on every accept (listener allow/deny, accept_proxy_from), so a lookup
// walks one bit per prefix bit of a binary trie: O(prefix length), never
// O(entries) — a 10,000-entry list costs the same per accept as a 10-entry one.
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports
// for an IPv4 client) is looked up as the IPv4 address it carries.
//
// Built once (with the config), then read-only: lookups from any thread.
#pragma once

#include "sluice/addr.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class CidrSet {
public:
    // Adds one prefix. Returns an error in words for anything but an IPv4 or
    // IPv6 address with an optional "/LEN" (LEN <= 32 or 128), including a
    // prefix with bits set past LEN ("10.0.0.1/8": meant 10.0.0.0/8?).
    std::optional<std::string> add(std::string_view text);

    // True when `address`'s IP lies inside any added prefix (the port is ignored).
    bool contains(const SocketAddress& address) const noexcept;

    bool empty() const noexcept { return entries_ == 0; }
    std::size_t size() const noexcept { return entries_; }  // prefixes added

private:
    // One trie node; children index nodes_ (0 = none: node 0 is never a child,
    // the roots live at fixed indices). `covers` marks the end of a prefix:
    // everything below it is inside.
    struct Node {
        std::uint32_t child[2] = {0, 0};
        bool covers = false;
    };
    static constexpr std::uint32_t kRootV4 = 0;
    static constexpr std::uint32_t kRootV6 = 1;

    void insert(std::uint32_t root, const std::uint8_t* bits, int prefix_len);
    bool lookup(std::uint32_t root, const std::uint8_t* bits, int bit_count) const noexcept;

    std::vector<Node> nodes_ = std::vector<Node>(2);
    std::size_t entries_ = 0;
};

} // namespace sluice
