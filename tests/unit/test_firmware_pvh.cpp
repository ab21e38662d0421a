// The PVH loader: ELF parsing, segment loading, hvm_start_info, the 32-bit entry state,
// and every way an ELF or its inputs can be refused.
#include <doctest/doctest.h>

#include <string>

#include "firmware/boot.hpp"
#include "firmware/elf.hpp"
#include "firmware/pvh_start_info.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::test;

namespace {

Result<BootInfo> load(const GuestMemory& mem, const std::vector<uint8_t>& kernel,
                      const std::vector<uint8_t>& initrd = {}, std::string_view cmdline = "console=ttyS0") {
    return load_kernel(mem, BootRequest{kernel, initrd, cmdline, 1});
}

std::string error(const GuestMemory& mem, const std::vector<uint8_t>& kernel, const std::vector<uint8_t>& initrd = {},
                  std::string_view cmdline = "") {
    auto r = load(mem, kernel, initrd, cmdline);
    return r ? std::string("(loaded)") : r.error().message();
}

pvh::StartInfo start_info(const GuestMemory& mem) { return guest_read<pvh::StartInfo>(mem, pvh::kStartInfoAddr); }

} // namespace

TEST_CASE("PVH: segments load at p_paddr and .bss is zeroed") {
    auto mem = make_memory(128 * MiB);
    REQUIRE(mem.fill(GuestAddress(0x100000), 0xcc, 0x400000)); // stale contents
    const ElfOptions o{.segments = {{.paddr = 0x100000, .file_size = 0x1800, .mem_size = 0x3000},
                                    {.paddr = 0x300000, .file_size = 0x10, .mem_size = 0x10}},
                       .notes = {ElfNote{.entry = 0x100040}}};
    const auto elf = make_pvh_elf(o);
    auto r = load(mem, elf);
    REQUIRE_MESSAGE(r, r.error().message());
    CHECK(r->format == KernelFormat::PvhElf);
    CHECK(r->kernel_start == 0x100000);
    CHECK(r->kernel_end == 0x300010);
    for (uint64_t i : {0ull, 1ull, 0x17ffull})
        CHECK(guest_read<uint8_t>(mem, 0x100000 + i) == static_cast<uint8_t>(i * 13 + 1));
    CHECK(guest_read<uint8_t>(mem, 0x101800) == 0);
    CHECK(guest_read<uint8_t>(mem, 0x102fff) == 0);
    CHECK(guest_read<uint8_t>(mem, 0x103000) == 0xcc); // past memsz: untouched
    CHECK(guest_read<uint8_t>(mem, 0x300001) == 14);
}

TEST_CASE("PVH: hvm_start_info, command line and memory map") {
    auto mem = make_memory(256 * MiB);
    auto r = load(mem, make_pvh_elf(), {}, "console=ttyS0 job=hello");
    REQUIRE(r);
    const auto si = start_info(mem);
    CHECK(v(si.magic) == 0x336ec578);
    CHECK(v(si.version) == 1);
    CHECK(v(si.flags) == 0);
    CHECK(v(si.nr_modules) == 0);
    CHECK(v(si.modlist_paddr) == 0);
    CHECK(v(si.rsdp_paddr) == 0);
    CHECK(v(si.cmdline_paddr) == layout::kCmdline);
    CHECK(guest_string(mem, si.cmdline_paddr) == "console=ttyS0 job=hello");

    const auto& map = mem.memory_map();
    REQUIRE(v(si.memmap_entries) == map.size());
    uint64_t usable = 0;
    for (size_t i = 0; i < map.size(); ++i) {
        const auto e = guest_read<pvh::MemmapEntry>(mem, si.memmap_paddr + i * sizeof(pvh::MemmapEntry));
        CHECK(v(e.addr) == map[i].start);
        CHECK(v(e.size) == map[i].size);
        CHECK(v(e.type) == (map[i].kind == MemoryRange::Kind::Ram ? 1u : 2u));
        CHECK(v(e.reserved) == 0);
        if (v(e.type) == 1) usable += e.size;
    }
    CHECK(usable == 256 * MiB);
}

TEST_CASE("PVH: the initrd is module 0, high and page-aligned above the kernel") {
    std::vector<uint8_t> initrd(5 * MiB + 7);
    for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<uint8_t>(i ^ (i >> 9));

    SUBCASE("in a small guest") {
        auto mem = make_memory(64 * MiB);
        auto r = load(mem, make_pvh_elf(), initrd);
        REQUIRE(r);
        const auto si = start_info(mem);
        CHECK(v(si.nr_modules) == 1);
        CHECK(v(si.modlist_paddr) == pvh::kModlistAddr);
        const auto m = guest_read<pvh::ModlistEntry>(mem, si.modlist_paddr);
        CHECK(v(m.paddr) == r->initrd_start);
        CHECK(v(m.size) == initrd.size());
        CHECK(v(m.cmdline_paddr) == 0);
        CHECK(r->initrd_start % 4096 == 0);
        CHECK(r->initrd_start >= r->kernel_end);
        CHECK(r->initrd_start + initrd.size() <= low_ram_end_for(64 * MiB));
        CHECK(r->initrd_start + initrd.size() + 4096 > low_ram_end_for(64 * MiB));
        std::vector<uint8_t> back(initrd.size());
        REQUIRE(mem.read(GuestAddress(r->initrd_start), back));
        CHECK(back == initrd);
    }
    SUBCASE("below the 3 GiB hole in a large guest") {
        auto mem = make_memory(4 * layout::GiB);
        auto r = load(mem, make_pvh_elf(), initrd);
        REQUIRE(r);
        CHECK(r->initrd_start + initrd.size() <= layout::kMmioHoleStart);
        CHECK(r->initrd_start + initrd.size() + 4096 > layout::kMmioHoleStart);
    }
}

TEST_CASE("PVH: the 32-bit protected-mode entry state") {
    auto mem = make_memory(64 * MiB);
    auto r = load(mem, make_pvh_elf({.notes = {ElfNote{.entry = 0x100123}}}));
    REQUIRE(r);
    const auto& c = r->cpu;
    CHECK(c.rip == 0x100123);
    CHECK(c.rbx == layout::kPvhStartInfo);
    CHECK(c.rflags == 2);
    CHECK(c.cr0 == 0x11);
    CHECK(c.cr4 == 0);
    CHECK(c.efer == 0);
    CHECK(c.cs.selector == 0x08);
    CHECK(c.cs.base == 0);
    CHECK(c.cs.limit == 0xffffffff);
    CHECK(c.cs.type == 0xb);
    CHECK(c.cs.db == 1);
    CHECK(c.cs.l == 0);
    CHECK(c.cs.s == 1);
    CHECK(c.cs.present == 1);
    for (const auto* s : {&c.ds, &c.es, &c.ss, &c.fs, &c.gs}) {
        CHECK(s->selector == 0x10);
        CHECK(s->type == 3);
        CHECK(s->limit == 0xffffffff);
        CHECK(s->db == 1);
        CHECK(s->present == 1);
    }
    CHECK(c.tr.selector == 0x18);
    CHECK(c.tr.type == 11);
    CHECK(c.tr.limit == 0x67);
    CHECK(c.tr.base == 0);
    CHECK(c.tr.s == 0);
    CHECK(c.tr.present == 1);
    CHECK(c.gdt.base == layout::kBootGdt);
    CHECK(c.gdt.limit == 31);
    CHECK(guest_read<uint64_t>(mem, layout::kBootGdt + 8) == 0x00cf9b000000ffffull);
}

TEST_CASE("PVH: ELF32 kernels and 8-byte entry notes among other notes") {
    auto mem = make_memory(64 * MiB);
    auto r32 = load(mem, make_pvh_elf({.is_64bit = false, .notes = {ElfNote{.desc_size = 4, .entry = 0x100010}}}));
    REQUIRE_MESSAGE(r32, r32.error().message());
    CHECK(r32->cpu.rip == 0x100010);

    const ElfOptions o{.notes = {ElfNote{.name = "GNU", .type = 3, .desc_size = 20},
                                 ElfNote{.name = std::string("Xen\0", 4), .type = 17, .desc_size = 8, .entry = 7},
                                 ElfNote{.name = std::string("Xen\0", 4), .desc_size = 8, .entry = 0x100800}}};
    auto r64 = load(mem, make_pvh_elf(o));
    REQUIRE_MESSAGE(r64, r64.error().message());
    CHECK(r64->cpu.rip == 0x100800);
}

TEST_CASE("PVH: an ELF without the PVH note is one clear error") {
    auto mem = make_memory(64 * MiB);
    const std::string msg = "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)";
    CHECK(error(mem, make_pvh_elf({.notes = {}})) == msg);
    CHECK(error(mem, make_pvh_elf({.note_segment = false})) == msg);
    CHECK(error(mem, make_pvh_elf({.notes = {ElfNote{.name = "Xen"}}})) == msg);    // name without its NUL
    CHECK(error(mem, make_pvh_elf({.notes = {ElfNote{.type = 17}}})) == msg);       // another Xen note
    CHECK(error(mem, make_pvh_elf({.notes = {ElfNote{.name = std::string("Linux\0", 6), .type = 18}}})) == msg);
    CHECK(error(mem, make_pvh_elf({.notes = {ElfNote{.desc_size = 2}}})) ==
          "PVH entry note has a 2-byte address (expected 4 or 8)");
    CHECK(error(mem, make_pvh_elf({.notes = {ElfNote{.desc_size = 8, .entry = 0x100000000}}})) ==
          "PVH entry point 0x100000000 is above 4 GiB");
}

TEST_CASE("PVH: truncated and inconsistent ELFs") {
    auto mem = make_memory(64 * MiB);
    const auto good = make_pvh_elf();
    auto cut = [&](size_t n) { return std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n)); };

    CHECK(error(mem, cut(4)) == "truncated ELF: the file is only 4 bytes");
    CHECK(error(mem, cut(40)) == "truncated ELF: the file is 40 bytes, an ELF64 header needs 64");
    CHECK(error(mem, cut(100)).starts_with("truncated ELF: program headers at 0x40+0x70 are past the end"));
    CHECK(error(mem, cut(good.size() - 1)).starts_with("truncated ELF: segment 1 at 0x1000+0x1000 is past the end"));

    SUBCASE("program header offset far past the end (no overflow)") {
        auto e = good;
        put<uint64_t>(e, 32, UINT64_MAX - 8);
        CHECK(error(mem, e).starts_with("truncated ELF: program headers at 0xfffffffffffffff7"));
    }
    SUBCASE("segment offset + size overflows") {
        auto e = good;
        put<uint64_t>(e, 64 + 56 + 8, UINT64_MAX - 0x10); // the PT_LOAD's p_offset
        CHECK(error(mem, e).starts_with("truncated ELF: segment 1 at 0xffffffffffffffef+0x1000"));
    }
    SUBCASE("a note running past its segment") {
        auto e = good;
        put<uint32_t>(e, 64 + 2 * 56 + 4, 0x7fffffff); // the note's descsz
        CHECK(error(mem, e) == "truncated ELF: a note runs past its PT_NOTE segment");
    }
    SUBCASE("filesz > memsz") {
        CHECK(error(mem, make_pvh_elf({.segments = {{.file_size = 0x2000, .mem_size = 0x1000}}})) ==
              "ELF segment 1 has more file bytes (0x2000) than memory bytes (0x1000)");
    }
    SUBCASE("address wraps") {
        CHECK(error(mem, make_pvh_elf({.segments = {{.paddr = UINT64_MAX - 0xfff}}})).starts_with(
            "ELF segment 1 at 0xfffffffffffff000+0x2000 wraps around"));
    }
    SUBCASE("wrong machine, class or byte order") {
        CHECK(error(mem, make_pvh_elf({.machine = 183})) == "ELF64 kernel is for machine 183, not x86-64");
        CHECK(error(mem, make_pvh_elf({.is_64bit = false, .machine = 62})) ==
              "ELF32 kernel is for machine 62, not i386");
        CHECK(error(mem, make_pvh_elf({.data = 2})) == "ELF kernel is big-endian, not x86");
        auto e = good;
        e[4] = 9;
        CHECK(error(mem, e) == "ELF kernel has an unknown ELF class 9");
    }
    SUBCASE("no program headers, or no loadable segment") {
        auto e = good;
        put<uint16_t>(e, 56, 0);
        CHECK(error(mem, e) == "ELF kernel has no program headers");
        CHECK(error(mem, make_pvh_elf({.segments = {}})) == "ELF kernel has no loadable segments");
    }
}

TEST_CASE("PVH: segments must land in guest RAM above 1 MiB") {
    auto mem = make_memory(64 * MiB);
    CHECK(error(mem, make_pvh_elf({.segments = {{.paddr = 0x7000}}, .notes = {ElfNote{.entry = 0x7000}}})) ==
          "ELF segment [0x7000, 0x9000) overlaps the firmware area below 1 MiB");
    CHECK(error(mem, make_pvh_elf({.segments = {{.paddr = 0xff000}}, .notes = {ElfNote{.entry = 0x100000}}})) ==
          "ELF segment [0xff000, 0x101000) overlaps the firmware area below 1 MiB");
    CHECK(error(mem, make_pvh_elf({.segments = {{.paddr = 0x80000000}}, .notes = {ElfNote{.entry = 0x80000000}}})) ==
          fmt::format("ELF segment [0x80000000, 0x80002000) is outside guest RAM (RAM below the 3 GiB hole ends "
                      "at {:#x})",
                      low_ram_end_for(64 * MiB)));
    // A kernel bigger than memory: its .bss runs off the end.
    CHECK(error(mem, make_pvh_elf({.segments = {{.mem_size = 100 * MiB}}})).starts_with(
        "ELF segment [0x100000, 0x6500000) is outside guest RAM"));
    CHECK(error(mem, make_pvh_elf({.notes = {ElfNote{.entry = 0x200000}}})) ==
          "PVH entry point 0x200000 is outside the kernel's segments [0x100000, 0x102000)");
}

TEST_CASE("PVH: initrd and command line errors") {
    auto mem = make_memory(64 * MiB);
    const auto msg = error(mem, make_pvh_elf(), std::vector<uint8_t>(70 * MiB));
    CHECK(msg.starts_with(
        fmt::format("initrd of 70 MiB does not fit in guest memory below {:#x}", low_ram_end_for(64 * MiB))));
    CHECK(error(mem, make_pvh_elf(), {}, std::string(65536, 'x')) ==
          "command line is 65536 bytes; Kiln's limit is 65535");
    CHECK(error(mem, make_pvh_elf(), {}, std::string(65535, 'x')) == "(loaded)");
}
