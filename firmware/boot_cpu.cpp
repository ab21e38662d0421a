#include "firmware/boot_cpu.hpp"

#include <vector>

#include "vmm/memory/layout.hpp"

namespace kiln::firmware::boot_cpu {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kPresentWritable = 0x3;   // P | RW
constexpr uint64_t kLargePage = 0x80;        // PS: a 2 MiB mapping in a PD entry
constexpr uint64_t kPdCount = 4;             // 4 PDs x 512 x 2 MiB = 4 GiB
constexpr uint64_t kEntriesPerTable = 512;

Result<void> write_gdt(const GuestMemory& mem, const Gdt& gdt) {
    static_assert(layout::kBootGdt + sizeof(Gdt) <= layout::kBootIdt, "boot GDT overlaps the boot IDT");
    KILN_TRY_CTX(mem.write_obj(GuestAddress(layout::kBootGdt), gdt), "writing the boot GDT");
    // An empty IDT: any exception before the kernel installs its own is a triple fault,
    // which ends the VM visibly instead of jumping through garbage.
    KILN_TRY_CTX(mem.fill(GuestAddress(layout::kBootIdt), 0, 16), "writing the boot IDT");
    return {};
}

void set_tables(BootCpuState& s) {
    s.gdt = {layout::kBootGdt, static_cast<uint16_t>(sizeof(Gdt) - 1)};
    s.idt = {layout::kBootIdt, 0};
    // No LDT: not present, so KVM marks it unusable.
    s.ldt = Segment{};
    s.ldt.type = 2;
    s.rflags = kRflagsReserved;
}

} // namespace

Segment segment_from_descriptor(uint64_t desc, uint16_t selector) {
    Segment s;
    s.base = ((desc >> 16) & 0xffffff) | (((desc >> 56) & 0xff) << 24);
    const auto raw_limit = static_cast<uint32_t>((desc & 0xffff) | (((desc >> 48) & 0xf) << 16));
    s.g = static_cast<uint8_t>((desc >> 55) & 1);
    s.limit = s.g ? (raw_limit << 12) | 0xfff : raw_limit;
    s.selector = selector;
    s.type = static_cast<uint8_t>((desc >> 40) & 0xf);
    s.s = static_cast<uint8_t>((desc >> 44) & 1);
    s.dpl = static_cast<uint8_t>((desc >> 45) & 3);
    s.present = static_cast<uint8_t>((desc >> 47) & 1);
    s.avl = static_cast<uint8_t>((desc >> 52) & 1);
    s.l = static_cast<uint8_t>((desc >> 53) & 1);
    s.db = static_cast<uint8_t>((desc >> 54) & 1);
    return s;
}

Gdt long_mode_gdt() {
    Gdt g{};
    g[bz_selector::kTss / 8] = gdt_entry(kTssFlags, 0, kTssLimit);
    g[bz_selector::kCode / 8] = gdt_entry(kCode64Flags, 0, 0xfffff);
    g[bz_selector::kData / 8] = gdt_entry(kDataFlags, 0, 0xfffff);
    return g;
}

Gdt protected_mode_gdt() {
    Gdt g{};
    g[pvh_selector::kCode / 8] = gdt_entry(kCode32Flags, 0, 0xfffff);
    g[pvh_selector::kData / 8] = gdt_entry(kDataFlags, 0, 0xfffff);
    g[pvh_selector::kTss / 8] = gdt_entry(kTssFlags, 0, kTssLimit);
    return g;
}

Result<uint64_t> write_identity_page_tables(const GuestMemory& mem) {
    using namespace layout;
    static_assert(kPdpt == kPml4 + kPageSize && kPd == kPdpt + kPageSize);
    static_assert(kPd + kPdCount * kPageSize <= kCmdline, "page tables overlap the command line");
    // Built whole on the host and written in one go: every entry not named here is zero
    // (not present), whatever the memory held before.
    std::vector<uint64_t> tables(kEntriesPerTable * (2 + kPdCount), 0);
    tables[0] = kPdpt | kPresentWritable;
    for (uint64_t i = 0; i < kPdCount; ++i) tables[kEntriesPerTable + i] = (kPd + i * kPageSize) | kPresentWritable;
    for (uint64_t i = 0; i < kEntriesPerTable * kPdCount; ++i)
        tables[2 * kEntriesPerTable + i] = (i << 21) | kLargePage | kPresentWritable;
    KILN_TRY_CTX(mem.write(GuestAddress(kPml4), {reinterpret_cast<const uint8_t*>(tables.data()),
                                                 tables.size() * sizeof(uint64_t)}),
                 "writing the boot page tables");
    return kPml4;
}

Result<BootCpuState> long_mode_state(const GuestMemory& mem) {
    const Gdt gdt = long_mode_gdt();
    KILN_TRY(write_gdt(mem, gdt));
    BootCpuState s;
    s.cr3 = KILN_TRY(write_identity_page_tables(mem));
    s.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
    s.cs = segment_from_descriptor(gdt[bz_selector::kCode / 8], bz_selector::kCode);
    const Segment data = segment_from_descriptor(gdt[bz_selector::kData / 8], bz_selector::kData);
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr = segment_from_descriptor(gdt[bz_selector::kTss / 8], bz_selector::kTss);
    set_tables(s);
    return s;
}

Result<BootCpuState> protected_mode_state(const GuestMemory& mem) {
    const Gdt gdt = protected_mode_gdt();
    KILN_TRY(write_gdt(mem, gdt));
    BootCpuState s;
    s.cr0 = kCr0Pe | kCr0Et; // the PVH ABI: protected mode, paging off, CR4 all clear
    s.cs = segment_from_descriptor(gdt[pvh_selector::kCode / 8], pvh_selector::kCode);
    const Segment data = segment_from_descriptor(gdt[pvh_selector::kData / 8], pvh_selector::kData);
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr = segment_from_descriptor(gdt[pvh_selector::kTss / 8], pvh_selector::kTss);
    set_tables(s);
    return s;
}

} // namespace kiln::firmware::boot_cpu
