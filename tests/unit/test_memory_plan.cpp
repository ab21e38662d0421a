// MemoryPlan::for_ram_size: the usable RAM is exactly what was asked for, and nothing
// lands in the 32-bit MMIO hole.
#include <doctest/doctest.h>

#include "vmm/memory/guest_memory.hpp"
#include "vmm/memory/layout.hpp"

using namespace kiln;
using namespace kiln::layout;

namespace {

bool overlaps_hole(const MemoryRange& r) { return r.start < kMmioHoleEnd && r.end() > kMmioHoleStart; }

} // namespace

TEST_CASE("memory plan: usable RAM adds up and the MMIO hole stays empty") {
    for (uint64_t ram : {4 * MiB, 128 * MiB, 512 * MiB, 3 * GiB - (kHighMemory - kLowRamEnd), 3 * GiB, 4 * GiB, 8 * GiB}) {
        CAPTURE(ram);
        auto p = MemoryPlan::for_ram_size(ram);
        REQUIRE(p);
        CHECK(p->usable_bytes() == ram);

        uint64_t prev_end = 0;
        for (const auto& r : p->map) {
            CHECK(r.start >= prev_end); // sorted, no overlaps
            CHECK(r.size > 0);
            CHECK_FALSE(overlaps_hole(r));
            prev_end = r.end();
        }
        for (const auto& b : p->backed) CHECK_FALSE(overlaps_hole(b));
        REQUIRE(p->map.size() >= 3);
        CHECK(p->map[0] == MemoryRange{0, kLowRamEnd, MemoryRange::Kind::Ram});
        CHECK(p->map[1] == MemoryRange{kLowRamEnd, kHighMemory - kLowRamEnd, MemoryRange::Kind::Reserved});
        CHECK(p->map[2].start == kHighMemory);
        CHECK(p->map[2].kind == MemoryRange::Kind::Ram);

        // Every RAM range of the map is backed (a memslot), or the guest would fault on it.
        for (const auto& r : p->map) {
            if (r.kind != MemoryRange::Kind::Ram) continue;
            bool backed = false;
            for (const auto& b : p->backed) backed = backed || (r.start >= b.start && r.end() <= b.end());
            CHECK(backed);
        }
    }
}

// KVM_SET_USER_MEMORY_REGION refuses a memslot whose address or size is not a multiple
// of the page size (EINVAL), so every backed range must be page-aligned; the e820 view is
// too (low RAM ends at layout::kLowRamEnd, not at the EBDA's 0x9fc00), so no RAM range
// ends in a partial page the guest would have to trim.
TEST_CASE("memory plan: every backed and mapped range is page-aligned") {
    for (uint64_t ram : {4 * MiB, 128 * MiB, 512 * MiB, 3 * GiB - (kHighMemory - kLowRamEnd), 3 * GiB, 8 * GiB}) {
        CAPTURE(ram);
        auto p = MemoryPlan::for_ram_size(ram);
        REQUIRE(p);
        for (const auto* list : {&p->backed, &p->map}) {
            for (const auto& r : *list) {
                CAPTURE(r.start);
                CAPTURE(r.size);
                CHECK(r.start % (4 * KiB) == 0);
                CHECK(r.size % (4 * KiB) == 0);
            }
        }
    }
}

TEST_CASE("memory plan: RAM beyond the hole continues at 4 GiB") {
    auto small = MemoryPlan::for_ram_size(512 * MiB);
    REQUIRE(small);
    CHECK(small->map.size() == 3);
    CHECK(small->backed.size() == 1);

    auto big = MemoryPlan::for_ram_size(8 * GiB);
    REQUIRE(big);
    REQUIRE(big->map.size() == 4);
    CHECK(big->map[2].end() == kMmioHoleStart);
    CHECK(big->map[3].start == kMmioHoleEnd);
    CHECK(big->map[3].kind == MemoryRange::Kind::Ram);
    CHECK(big->map[3].end() == 8 * GiB + (kHighMemory - kLowRamEnd) + (kMmioHoleEnd - kMmioHoleStart));
    REQUIRE(big->backed.size() == 2);
    CHECK(big->backed[1].start == kMmioHoleEnd);
}

TEST_CASE("memory plan: sizes it refuses") {
    CHECK_FALSE(MemoryPlan::for_ram_size(0));
    CHECK_FALSE(MemoryPlan::for_ram_size(1 * MiB));
    CHECK_FALSE(MemoryPlan::for_ram_size(128 * MiB + 1));
    CHECK_FALSE(MemoryPlan::for_ram_size(uint64_t{1} << 50));
    auto r = MemoryPlan::for_ram_size(0);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("too small") != std::string::npos);
}

TEST_CASE("guest memory: zero() clears exactly the range, unaligned edges included") {
    auto plan = MemoryPlan::for_ram_size(16ull << 20);
    REQUIRE(plan);
    auto mem = GuestMemory::create(*plan);
    REQUIRE(mem);
    const GuestAddress base(kHighMemory);
    const uint64_t span = 5 * 4096;
    REQUIRE(mem->fill(base, 0xa5, span));
    // From the middle of the first page to the middle of the last: three whole pages
    // are dropped, the two partial ones written.
    const uint64_t start = 1000, len = span - 2000;
    REQUIRE(mem->zero(GuestAddress(base.value + start), len));
    std::vector<uint8_t> back(span);
    REQUIRE(mem->read(base, back));
    for (uint64_t i = 0; i < span; ++i) {
        const bool inside = i >= start && i < start + len;
        if (back[i] != (inside ? 0 : 0xa5)) {
            CAPTURE(i);
            FAIL("byte " << i << " is " << int(back[i]));
        }
    }
    CHECK_FALSE(mem->zero(GuestAddress(base.value), 1ull << 40)); // outside RAM: refused
}
