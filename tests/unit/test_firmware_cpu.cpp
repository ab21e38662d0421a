// The boot GDT, the identity page tables and the register state derived from them.
#include <doctest/doctest.h>

#include "firmware/boot_cpu.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::firmware::boot_cpu;
using namespace kiln::test;

namespace {

bool same(const Segment& a, const Segment& b) {
    return a.base == b.base && a.limit == b.limit && a.selector == b.selector && a.type == b.type &&
           a.present == b.present && a.dpl == b.dpl && a.db == b.db && a.s == b.s && a.l == b.l && a.g == b.g &&
           a.avl == b.avl;
}

} // namespace

TEST_CASE("boot GDT: descriptors encode as the SDM lays them out") {
    CHECK(gdt_entry(0, 0, 0) == 0);
    CHECK(gdt_entry(kCode64Flags, 0, 0xfffff) == 0x00af9b000000ffffull);
    CHECK(gdt_entry(kCode32Flags, 0, 0xfffff) == 0x00cf9b000000ffffull);
    CHECK(gdt_entry(kDataFlags, 0, 0xfffff) == 0x00cf93000000ffffull);
    CHECK(gdt_entry(kTssFlags, 0, 0x67) == 0x00008b0000000067ull);
    CHECK(gdt_entry(kDataFlags, 0x12345678, 0xabcde) == 0x12cA93345678bcdeull);
}

TEST_CASE("boot GDT: segments decode back, limits scaled by granularity") {
    const auto code64 = segment_from_descriptor(gdt_entry(kCode64Flags, 0, 0xfffff), 0x10);
    CHECK(code64.selector == 0x10);
    CHECK(code64.base == 0);
    CHECK(code64.limit == 0xffffffff);
    CHECK(code64.type == 0xb);
    CHECK(code64.present == 1);
    CHECK(code64.s == 1);
    CHECK(code64.dpl == 0);
    CHECK(code64.l == 1);
    CHECK(code64.db == 0);
    CHECK(code64.g == 1);

    const auto tss = segment_from_descriptor(gdt_entry(kTssFlags, 0, kTssLimit), 0x18);
    CHECK(tss.limit == 0x67);
    CHECK(tss.g == 0);
    CHECK(tss.s == 0);
    CHECK(tss.type == 11);

    const auto odd = segment_from_descriptor(gdt_entry(kDataFlags, 0x12345678, 0xabcde), 0x18);
    CHECK(odd.base == 0x12345678);
    CHECK(odd.limit == 0xabcdefff);
}

TEST_CASE("boot page tables identity-map 4 GiB with 2 MiB pages") {
    auto mem = make_memory(16 * MiB);
    REQUIRE(mem.fill(GuestAddress(layout::kPml4), 0xff, 6 * 4096)); // stale contents
    auto cr3 = write_identity_page_tables(mem);
    REQUIRE(cr3);
    CHECK(*cr3 == layout::kPml4);
    CHECK(guest_read<uint64_t>(mem, layout::kPml4) == 0xa003);
    for (uint64_t i = 1; i < 512; ++i) CHECK(guest_read<uint64_t>(mem, layout::kPml4 + i * 8) == 0);
    for (uint64_t i = 0; i < 4; ++i) CHECK(guest_read<uint64_t>(mem, layout::kPdpt + i * 8) == (0xb003 + i * 0x1000));
    CHECK(guest_read<uint64_t>(mem, layout::kPdpt + 4 * 8) == 0);
    bool all = true;
    for (uint64_t i = 0; i < 2048; ++i)
        all = all && guest_read<uint64_t>(mem, layout::kPd + i * 8) == ((i << 21) | 0x83);
    CHECK(all);
    CHECK(guest_read<uint64_t>(mem, layout::kPd + 2047 * 8) == (0xffe00000ull | 0x83));
}

TEST_CASE("long-mode boot state matches the GDT it writes") {
    auto mem = make_memory(16 * MiB);
    auto s = long_mode_state(mem);
    REQUIRE(s);
    const auto gdt = long_mode_gdt();
    for (size_t i = 0; i < gdt.size(); ++i) CHECK(guest_read<uint64_t>(mem, layout::kBootGdt + i * 8) == gdt[i]);
    CHECK(gdt[0] == 0);
    CHECK(s->cs.selector == 0x10);
    CHECK(s->ds.selector == 0x18);
    CHECK(s->tr.selector == 0x08);
    CHECK(s->cs.l == 1);
    CHECK(s->tr.type == 11);
    CHECK(s->cr0 == (kCr0Pe | kCr0Et | kCr0Pg));
    CHECK(s->cr4 == kCr4Pae);
    CHECK(s->efer == (kEferLme | kEferLma));
    CHECK(s->cr3 == layout::kPml4);
    CHECK(s->idt.base == layout::kBootIdt);
    CHECK(s->idt.limit == 0);
    CHECK(s->ldt.present == 0);
    CHECK(s->rflags == 2);
}

TEST_CASE("protected-mode boot state matches the GDT it writes") {
    auto mem = make_memory(16 * MiB);
    auto s = protected_mode_state(mem);
    REQUIRE(s);
    const auto gdt = protected_mode_gdt();
    for (size_t i = 0; i < gdt.size(); ++i) CHECK(guest_read<uint64_t>(mem, layout::kBootGdt + i * 8) == gdt[i]);
    CHECK(same(s->cs, segment_from_descriptor(gdt[1], 0x08)));
    CHECK(same(s->ss, segment_from_descriptor(gdt[2], 0x10)));
    CHECK(same(s->tr, segment_from_descriptor(gdt[3], 0x18)));
    CHECK(s->cr0 == (kCr0Pe | kCr0Et));
    CHECK(s->cr3 == 0);
    CHECK(s->cr4 == 0);
    CHECK(s->efer == 0);
}
