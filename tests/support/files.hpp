// Files for tests, unit and integration alike: a scratch directory that removes itself,
// deterministic random contents, whole-file reads and writes.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace kiln::test {

class ScratchDir {
public:
    // `tmpl` ends in XXXXXX (mkdtemp). Under /tmp by default; tests that need O_DIRECT
    // pass a /var/tmp one (tmpfs has no O_DIRECT).
    explicit ScratchDir(std::string tmpl = "/tmp/kiln-test-XXXXXX") {
        REQUIRE(::mkdtemp(tmpl.data()));
        path = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    [[nodiscard]] std::string operator/(const std::string& name) const { return (path / name).string(); }

    std::filesystem::path path;
};

// `n` bytes from a seeded generator: the same every run.
inline std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
    std::vector<uint8_t> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& data) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    REQUIRE(f.good());
}

inline std::vector<uint8_t> read_bytes(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

} // namespace kiln::test
