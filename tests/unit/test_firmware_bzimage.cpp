// The bzImage loader: boot_params, e820, command line, initrd placement, the 64-bit
// entry state, and every way a bzImage or its inputs can be refused.
#include <doctest/doctest.h>

#include <string>

#include "firmware/boot.hpp"
#include "firmware/boot_cpu.hpp"
#include "firmware/boot_params.hpp"
#include "firmware/mptable.hpp"
#include "test_firmware_images.hpp"

using namespace kiln;
using namespace kiln::firmware;
using namespace kiln::firmware::linux_boot;
using namespace kiln::test;

namespace {

Result<BootInfo> load(const GuestMemory& mem, const std::vector<uint8_t>& kernel,
                      const std::vector<uint8_t>& initrd = {}, std::string_view cmdline = "console=ttyS0",
                      uint32_t cpus = 1) {
    return load_kernel(mem, BootRequest{kernel, initrd, cmdline, cpus});
}

BootParams zero_page(const GuestMemory& mem) { return guest_read<BootParams>(mem, layout::kZeroPage); }

uint64_t low_ram_end_of(const GuestMemory& mem) {
    for (const auto& r : mem.memory_map())
        if (r.kind == MemoryRange::Kind::Ram && r.start <= layout::kHighMemory && layout::kHighMemory < r.end())
            return r.end();
    return 0;
}

} // namespace

TEST_CASE("bzImage: boot_params carries the header, loader id, command line and e820") {
    auto mem = make_memory(128 * MiB);
    const auto img = make_bzimage();
    auto r = load(mem, img, {}, "console=ttyS0 root=/dev/vda");
    REQUIRE_MESSAGE(r, r.error().message());
    const auto bp = zero_page(mem);

    // The image's setup header, copied.
    CHECK(bp.hdr.setup_sects == 4);
    CHECK(v(bp.hdr.boot_flag) == kBootFlag);
    CHECK(v(bp.hdr.header) == kHeaderMagic);
    CHECK(v(bp.hdr.version) == 0x020f);
    CHECK(v(bp.hdr.xloadflags) == (kXlfKernel64 | kXlfCanBeLoadedAbove4G));
    CHECK(v(bp.hdr.cmdline_size) == 2048);
    CHECK(bp.pad7[0] == 0); // the image has 0xee just past its header: not copied
    // What the loader fills.
    CHECK(bp.hdr.type_of_loader == 0xff);
    CHECK((bp.hdr.loadflags & kLoadedHigh) != 0);
    CHECK((bp.hdr.loadflags & kCanUseHeap) != 0);
    CHECK(v(bp.hdr.heap_end_ptr) == 0xde00);
    CHECK(v(bp.hdr.cmd_line_ptr) == layout::kCmdline);
    CHECK(v(bp.ext_cmd_line_ptr) == 0);
    CHECK(v(bp.hdr.ramdisk_image) == 0);
    CHECK(v(bp.hdr.ramdisk_size) == 0);
    CHECK(guest_string(mem, layout::kCmdline) == "console=ttyS0 root=/dev/vda");

    // e820 is the memory map, and its usable RAM is exactly what was asked for.
    const auto& map = mem.memory_map();
    REQUIRE(bp.e820_entries == map.size());
    uint64_t usable = 0;
    for (size_t i = 0; i < map.size(); ++i) {
        const E820Entry e = bp.e820_table[i];
        CHECK(v(e.addr) == map[i].start);
        CHECK(v(e.size) == map[i].size);
        CHECK(v(e.type) == (map[i].kind == MemoryRange::Kind::Ram ? kE820Ram : kE820Reserved));
        if (v(e.type) == kE820Ram) usable += e.size;
    }
    CHECK(usable == 128 * MiB);
    CHECK(v(bp.e820_table[0].addr) == 0);
    CHECK(v(bp.e820_table[1].addr) == layout::kLowRamEnd);
    CHECK(v(bp.e820_table[1].type) == kE820Reserved);

    // The payload (everything after the setup sectors) is at 1 MiB.
    const size_t setup = 5 * 512;
    std::vector<uint8_t> loaded(img.size() - setup);
    REQUIRE(mem.read(GuestAddress(layout::kHighMemory), loaded));
    CHECK(std::equal(loaded.begin(), loaded.end(), img.begin() + setup));

    CHECK(r->format == KernelFormat::BzImage);
    CHECK(r->kernel_start == layout::kHighMemory);
    CHECK(r->kernel_end == layout::kHighMemory + 64 * 1024);
    CHECK(r->initrd_size == 0);
}

TEST_CASE("bzImage: the 64-bit entry state") {
    auto mem = make_memory(128 * MiB);
    auto r = load(mem, make_bzimage());
    REQUIRE(r);
    const auto& c = r->cpu;
    CHECK(c.rip == 0x100200);
    CHECK(c.rsi == layout::kZeroPage);
    CHECK(c.rsp == layout::kBootStack);
    CHECK(c.rbp == layout::kBootStack);
    CHECK(c.rflags == 2);
    CHECK(c.cr0 == 0x80000011);
    CHECK(c.cr3 == layout::kPml4);
    CHECK(c.cr4 == 0x20);
    CHECK(c.efer == 0x500);
    CHECK(c.cs.selector == 0x10);
    CHECK(c.cs.l == 1);
    CHECK(c.cs.db == 0);
    CHECK(c.cs.type == 0xb);
    CHECK(c.ds.selector == 0x18);
    CHECK(c.ss.selector == 0x18);
    CHECK(c.ds.type == 3);
    CHECK(c.tr.type == 11);
    CHECK(c.tr.s == 0);
    CHECK(c.tr.present == 1);
    CHECK(c.gdt.base == layout::kBootGdt);
    CHECK(c.gdt.limit == 31);
    // The identity map covers what the kernel is pointed at: the zero page, command line
    // and kernel are all below 4 GiB.
    CHECK(guest_read<uint64_t>(mem, layout::kPml4) == (layout::kPdpt | 3));
}

TEST_CASE("bzImage: setup_sects 0 means 4") {
    auto mem = make_memory(64 * MiB);
    const auto img = make_bzimage({.setup_sects = 0});
    REQUIRE(load(mem, img));
    CHECK(guest_read<uint8_t>(mem, layout::kHighMemory + 5) == img[5 * 512 + 5]);
    CHECK(zero_page(mem).hdr.setup_sects == 0);
}

TEST_CASE("bzImage: the header is copied only up to the end its jump gives") {
    auto mem = make_memory(64 * MiB);
    auto img = make_bzimage({.jump_len = 0x66}); // header ends at 0x268: no kernel_info_offset
    put<uint32_t>(img, 0x268, 0x12345678);
    REQUIRE(load(mem, img));
    CHECK(v(zero_page(mem).hdr.kernel_info_offset) == 0);
}

TEST_CASE("bzImage: the image's setup_data pointer is not passed on") {
    auto mem = make_memory(64 * MiB);
    REQUIRE(load(mem, make_bzimage({.setup_data = 0xdeadbeef})));
    CHECK(v(zero_page(mem).hdr.setup_data) == 0);
}

TEST_CASE("bzImage: the initrd goes high, page-aligned, within initrd_addr_max and above the kernel") {
    std::vector<uint8_t> initrd(3 * MiB + 123);
    for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<uint8_t>(i * 31);

    SUBCASE("limited by RAM") {
        auto mem = make_memory(128 * MiB);
        auto r = load(mem, make_bzimage(), initrd);
        REQUIRE(r);
        const auto bp = zero_page(mem);
        const uint64_t start = bp.hdr.ramdisk_image;
        CHECK(start == r->initrd_start);
        CHECK(v(bp.hdr.ramdisk_size) == initrd.size());
        CHECK(r->initrd_size == initrd.size());
        CHECK(v(bp.ext_ramdisk_image) == 0);
        CHECK(v(bp.ext_ramdisk_size) == 0);
        CHECK(start % 4096 == 0);
        CHECK(start >= r->kernel_end);
        const uint64_t ram_end = low_ram_end_of(mem);
        CHECK(start + initrd.size() <= ram_end);
        CHECK(start + initrd.size() + 4096 > ram_end); // as high as it goes
        std::vector<uint8_t> back(initrd.size());
        REQUIRE(mem.read(GuestAddress(start), back));
        CHECK(back == initrd);
    }
    SUBCASE("limited by initrd_addr_max") {
        auto mem = make_memory(128 * MiB);
        auto r = load(mem, make_bzimage({.initrd_addr_max = 0x3ffffff}), initrd);
        REQUIRE(r);
        CHECK(r->initrd_start + initrd.size() <= 0x4000000);
        CHECK(r->initrd_start + initrd.size() + 4096 > 0x4000000);
        CHECK(r->initrd_start % 4096 == 0);
    }
    SUBCASE("limited by the MMIO hole in a 3 GiB guest") {
        auto mem = make_memory(3 * layout::GiB);
        auto r = load(mem, make_bzimage({.initrd_addr_max = 0xffffffff}), initrd);
        REQUIRE(r);
        CHECK(r->initrd_start + initrd.size() <= layout::kMmioHoleStart);
        CHECK(r->initrd_start + initrd.size() + 4096 > layout::kMmioHoleStart);
    }
    SUBCASE("above where a relocatable kernel decompresses (pref_address + init_size)") {
        auto mem = make_memory(64 * MiB);
        auto r = load(mem, make_bzimage({.pref_address = 16 * MiB, .init_size = 32 * MiB}),
                      std::vector<uint8_t>(64 * MiB - 49 * MiB));
        REQUIRE_MESSAGE(r, r.error().message());
        CHECK(r->kernel_end == 48 * MiB);
        CHECK(r->initrd_start >= 48 * MiB);
    }
}

TEST_CASE("bzImage: an initrd that does not fit is one clear error") {
    auto mem = make_memory(64 * MiB);
    auto r = load(mem, make_bzimage(), std::vector<uint8_t>(80 * MiB));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().starts_with(
        fmt::format("initrd of 80 MiB does not fit in guest memory below {:#x}", low_ram_end_for(64 * MiB))));

    // Fits in RAM, but not below initrd_addr_max.
    auto mem2 = make_memory(128 * MiB);
    auto r2 = load(mem2, make_bzimage({.initrd_addr_max = 0xffffff}), std::vector<uint8_t>(16 * MiB));
    REQUIRE_FALSE(r2);
    CHECK(r2.error().message().starts_with("initrd of 16 MiB does not fit in guest memory below 0x1000000"));
}

TEST_CASE("bzImage: protocol and header errors") {
    auto mem = make_memory(64 * MiB);
    auto error = [&](const std::vector<uint8_t>& img) {
        auto r = load(mem, img);
        return r ? std::string("(loaded)") : r.error().message();
    };
    CHECK(error(make_bzimage({.version = 0x020b})) ==
          "bzImage boot protocol 2.11 is too old: Kiln uses the 64-bit entry, which needs 2.12 or newer");
    CHECK(error(make_bzimage({.version = 0x0204})).starts_with("bzImage boot protocol 2.04 is too old"));
    CHECK(error(make_bzimage({.xloadflags = 0})) ==
          "bzImage has no 64-bit entry point (XLF_KERNEL_64 is not set in xloadflags)");
    CHECK(error(make_bzimage({.loadflags = 0})) == "zImage kernels (not loaded high) are not supported");
    CHECK(error(make_bzimage({.jump_len = 0x40})) ==
          "bzImage setup header is 81 bytes, too short for its boot protocol 2.15");
    CHECK(error(make_bzimage({.payload_size = 0})) ==
          "truncated bzImage: 2560 bytes of setup code but the file has only 2560 bytes");
    auto lying = make_bzimage(); // 68096 bytes, but claims 200 setup sectors
    lying[0x1f1] = 200;
    CHECK(error(lying) == "truncated bzImage: 102912 bytes of setup code but the file has only 68096 bytes");
    auto cut = make_bzimage();
    cut.resize(3000);
    CHECK(error(cut) == "(loaded)"); // 440 bytes of payload is a (tiny) kernel
}

TEST_CASE("bzImage: a kernel larger than guest memory is refused") {
    auto mem = make_memory(16 * MiB);
    auto r = load(mem, make_bzimage({.init_size = 40 * MiB}));
    REQUIRE_FALSE(r);
    CHECK(r.error().message() ==
          "kernel does not fit: it needs guest RAM up to 41 MiB to load and decompress, but guest RAM below the "
          "3 GiB hole ends at 16 MiB");
    auto r2 = load(mem, make_bzimage({.pref_address = 16 * MiB, .init_size = 1 * MiB}));
    REQUIRE_FALSE(r2);
    CHECK(r2.error().message().starts_with("kernel does not fit: it needs guest RAM up to 17 MiB"));
    auto r3 = load(mem, make_bzimage({.pref_address = UINT64_MAX - 10}));
    REQUIRE_FALSE(r3);
    CHECK(r3.error().message() == "bzImage pref_address 0xfffffffffffffff5 is out of range");
}

TEST_CASE("bzImage: command line limits") {
    auto mem = make_memory(64 * MiB);
    SUBCASE("at the header's cmdline_size is fine") {
        REQUIRE(load(mem, make_bzimage(), {}, std::string(2048, 'a')));
        CHECK(guest_string(mem, layout::kCmdline).size() == 2048);
    }
    SUBCASE("beyond the header's cmdline_size") {
        auto r = load(mem, make_bzimage(), {}, std::string(2049, 'a'));
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == "command line is 2049 bytes; this kernel accepts at most 2048");
    }
    SUBCASE("beyond Kiln's 64 KiB area") {
        auto r = load(mem, make_bzimage({.cmdline_size = 0x100000}), {}, std::string(65536, 'a'));
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == "command line is 65536 bytes; Kiln's limit is 65535");
        CHECK(load(mem, make_bzimage({.cmdline_size = 0x100000}), {}, std::string(65535, 'a')));
    }
    SUBCASE("with a NUL byte") {
        auto r = load(mem, make_bzimage(), {}, std::string("a\0b", 3));
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == "the command line contains a NUL byte");
    }
    SUBCASE("empty") {
        REQUIRE(load(mem, make_bzimage(), {}, ""));
        CHECK(guest_read<uint8_t>(mem, layout::kCmdline) == 0);
    }
}

TEST_CASE("bzImage: the MP table is written too") {
    auto mem = make_memory(64 * MiB);
    REQUIRE(load(mem, make_bzimage(), {}, "", 4));
    const auto fp = guest_read<mptable::FloatingPointer>(mem, layout::kMpTable);
    CHECK(std::string(fp.signature, 4) == "_MP_");
}
