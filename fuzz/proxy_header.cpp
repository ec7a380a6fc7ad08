// Fuzz target: parse_proxy_header, which reads the first bytes every client of
// an accept_proxy listener sends, before sluice trusts anything about it.
//
// Properties: a Done header lies within the input and within the limits (107
// bytes for v1, kProxyMaxHeaderLength for v2), announces TCP addresses unless
// it is LOCAL/UNKNOWN, and is judged the same with more bytes after it; an
// Error says why and stays an Error with more bytes; NeedMore never comes
// for an input already past the limit; and what the encoders write for a
// parsed header parses back to the same addresses.
#include "fuzz_check.h"

#include "sluice/proxy_protocol.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using sluice::ProxyParse;
    using Status = ProxyParse::Status;
    const std::string_view input = sluice::fuzz::text_of(data, size);
    const ProxyParse parsed = sluice::parse_proxy_header(input);

    std::string longer(input);
    longer += "trailing client bytes";
    const ProxyParse again = sluice::parse_proxy_header(longer);

    switch (parsed.status) {
    case Status::NeedMore:
        FUZZ_CHECK(input.size() < sluice::kProxyMaxHeaderLength);
        break;
    case Status::Error:
        FUZZ_CHECK(!parsed.error.empty());
        FUZZ_CHECK(again.status == Status::Error);
        break;
    case Status::Done: {
        const sluice::ProxyHeader& h = parsed.header;
        FUZZ_CHECK(h.length > 0 && h.length <= input.size());
        FUZZ_CHECK(h.version == 1 || h.version == 2);
        FUZZ_CHECK(h.length <= (h.version == 1 ? sluice::kProxyV1MaxLength : sluice::kProxyMaxHeaderLength));
        FUZZ_CHECK(again.status == Status::Done && again.header.length == h.length);
        if (!h.local) {
            FUZZ_CHECK(h.source.family() == h.destination.family());
            FUZZ_CHECK(h.source.family() == AF_INET || h.source.family() == AF_INET6);
            char out[sluice::kProxyMaxEncodedLength];
            for (auto version : {sluice::ProxyVersion::V1, sluice::ProxyVersion::V2}) {
                const std::size_t n = sluice::encode_proxy_header(version, h.source, h.destination, out);
                const ProxyParse round = sluice::parse_proxy_header({out, n});
                FUZZ_CHECK(round.status == Status::Done && round.header.length == n);
                FUZZ_CHECK(round.header.source == h.source && round.header.destination == h.destination);
            }
        }
        break;
    }
    }
    return 0;
}
