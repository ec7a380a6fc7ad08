// SHA-256 (FIPS 180-4) for byte-exact transfer checks in tests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice::test {

class Sha256 {
public:
    Sha256();
    void update(const void* data, std::size_t length);
    // Finishes and returns the digest as lowercase hex. Call once.
    std::string hex_digest();

private:
    void compress(const std::uint8_t* block);

    std::array<std::uint32_t, 8> state_;
    std::array<std::uint8_t, 64> block_{};
    std::size_t block_used_ = 0;
    std::uint64_t total_bytes_ = 0;
};

} // namespace sluice::test
