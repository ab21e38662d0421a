// Format detection, the shared argument checks of load_kernel(), and robustness: no
// malformed kernel crashes the loader.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "firmware/boot.hpp"
#include "firmware/loader.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::test;

namespace {

std::string load_error(const GuestMemory& mem, const std::vector<uint8_t>& kernel, std::string_view cmdline = "") {
    auto r = load_kernel(mem, BootRequest{kernel, {}, cmdline, 1});
    return r ? std::string("(loaded)") : r.error().message();
}

} // namespace

TEST_CASE("firmware: to_string names both formats") {
    CHECK(to_string(KernelFormat::BzImage) == "bzImage");
    CHECK(to_string(KernelFormat::PvhElf) == "PVH ELF");
}

TEST_CASE("firmware: the format comes from the contents") {
    CHECK(detect_format(make_bzimage()) == KernelFormat::BzImage);
    CHECK(detect_format(make_pvh_elf()) == KernelFormat::PvhElf);
    CHECK(detect_format(make_pvh_elf({.is_64bit = false})) == KernelFormat::PvhElf);

    SUBCASE("HdrS without the 0xAA55 boot flag is not a bzImage") {
        auto img = make_bzimage();
        put<uint16_t>(img, 0x1fe, 0);
        CHECK_FALSE(detect_format(img).has_value());
    }
    SUBCASE("the boot flag without HdrS is not a bzImage") {
        auto img = make_bzimage();
        put<uint32_t>(img, 0x202, 0);
        CHECK_FALSE(detect_format(img).has_value());
    }
}

TEST_CASE("firmware: an empty kernel file is one clear error") {
    auto mem = make_memory(64 * MiB);
    CHECK(load_error(mem, {}) == "the kernel file is empty");
}

TEST_CASE("firmware: a file that is neither bzImage nor ELF is one clear error") {
    auto mem = make_memory(64 * MiB);
    const std::string expected = "not a bzImage or an ELF kernel (no \"HdrS\" Linux boot header and no ELF magic)";
    CHECK(load_error(mem, std::vector<uint8_t>(4096, 0x5a)) == expected);
    CHECK(load_error(mem, {'#', '!', '/', 'b', 'i', 'n', '/', 's', 'h', '\n'}) == expected);
    CHECK(load_error(mem, {0x7f, 'E', 'L'}) == expected);
    CHECK(load_error(mem, {0}) == expected);
}

TEST_CASE("firmware: the vCPU count is checked before anything is written") {
    auto mem = make_memory(64 * MiB);
    const auto img = make_bzimage();
    for (uint32_t cpus : {0u, 255u, 1000u}) {
        auto r = load_kernel(mem, BootRequest{img, {}, "", cpus});
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == fmt::format("{} vCPUs requested; the boot tables describe 1 to 254", cpus));
    }
    CHECK(guest_read<uint32_t>(mem, layout::kZeroPage + 0x202) == 0); // no boot_params
    CHECK(guest_read<uint32_t>(mem, layout::kHighMemory) == 0);       // no kernel
    CHECK(load_kernel(mem, BootRequest{img, {}, "", 254}).has_value());
}

TEST_CASE("firmware: every error is one line") {
    auto mem = make_memory(64 * MiB);
    const std::vector<std::vector<uint8_t>> bad = {
        {}, std::vector<uint8_t>(100, 1), make_bzimage({.version = 0x0200}), make_pvh_elf({.notes = {}})};
    for (const auto& k : bad) {
        const auto msg = load_error(mem, k);
        CHECK(msg.find('\n') == std::string::npos);
        CHECK_FALSE(msg.empty());
    }
}

// Truncations at every length and random byte flips of valid images: the loader must
// return (an error or a boot), never crash or read out of bounds. Run under ASan/UBSan
// to make "never" mean something.
TEST_CASE("firmware: malformed kernels never crash the loader") {
    auto mem = make_memory(32 * MiB);
    const std::vector<uint8_t> initrd(10000, 0x42);
    const std::vector<std::vector<uint8_t>> seeds = {
        make_bzimage({.payload_size = 2048}),
        make_pvh_elf(),
        make_pvh_elf({.is_64bit = false, .notes = {ElfNote{.desc_size = 4}}}),
        make_pvh_elf({.segments = {ElfSegment{}, ElfSegment{.paddr = 0x200000}},
                      .notes = {ElfNote{.name = "GNU", .type = 3, .desc_size = 8}, ElfNote{.desc_size = 8}}}),
    };
    std::mt19937_64 rng(20240501);
    size_t loaded = 0, failed = 0;
    for (const auto& seed : seeds) {
        for (size_t len = 0; len < seed.size(); len += (len < 0x1200 ? 1 : 509)) {
            std::vector<uint8_t> cut(seed.begin(), seed.begin() + static_cast<std::ptrdiff_t>(len));
            (load_kernel(mem, BootRequest{cut, initrd, "console=ttyS0", 2}) ? loaded : failed)++;
        }
        for (int round = 0; round < 3000; ++round) {
            auto k = seed;
            const int flips = 1 + static_cast<int>(rng() % 8);
            for (int i = 0; i < flips; ++i) {
                // Mostly in the headers, where the offsets and sizes are.
                const size_t span = rng() % 4 ? std::min<size_t>(k.size(), 0x300) : k.size();
                const size_t at = rng() % span;
                k[at] = rng() % 3 ? static_cast<uint8_t>(rng()) : static_cast<uint8_t>(0xff);
            }
            (load_kernel(mem, BootRequest{k, initrd, "console=ttyS0", 2}) ? loaded : failed)++;
        }
    }
    CHECK(failed > 0);
    CHECK(loaded > 0);
}
