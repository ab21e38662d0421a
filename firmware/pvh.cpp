// PVH boot (xen docs/misc/pvh.pandoc): an ELF kernel entered in 32-bit protected mode,
// paging off, at the address its XEN_ELFNOTE_PHYS32_ENTRY note gives, with EBX pointing
// at hvm_start_info (command line, initrd as module 0, memory map).
#include <algorithm>

#include "firmware/acpi.hpp"
#include "firmware/boot_cpu.hpp"
#include "firmware/bytes.hpp"
#include "firmware/elf.hpp"
#include "firmware/loader.hpp"
#include "firmware/placement.hpp"
#include "firmware/pvh_start_info.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln::firmware {

namespace {

// Every segment must land in RAM between 1 MiB and the end of low RAM: below 1 MiB are
// the boot structures (and the reserved EBDA/BIOS range), and a 32-bit entry with
// paging off cannot reach past 4 GiB anyway.
Result<void> check_segments(const GuestMemory& mem, const elf::PvhImage& img, uint64_t ram_end) {
    for (const auto& s : img.segments) {
        const uint64_t end = s.paddr + s.mem_size; // parse_pvh checked this does not wrap
        if (s.paddr < layout::kHighMemory)
            return fail("ELF segment [{:#x}, {:#x}) overlaps the firmware area below 1 MiB", s.paddr, end);
        if (end > ram_end || !mem.contains(GuestAddress(s.paddr), s.mem_size))
            return fail("ELF segment [{:#x}, {:#x}) is outside guest RAM (RAM below the 3 GiB hole ends at {:#x})",
                        s.paddr, end, ram_end);
    }
    return {};
}

Result<void> write_segments(const GuestMemory& mem, std::span<const uint8_t> file, const elf::PvhImage& img) {
    for (const auto& s : img.segments) {
        auto bytes = *sub_span(file, s.offset, s.file_size); // parse_pvh checked the range
        KILN_TRY_CTX(mem.write(GuestAddress(s.paddr), bytes), "writing ELF segment at {:#x}", s.paddr);
        // .bss: memory the file does not cover is zero, whatever the RAM held before.
        KILN_TRY_CTX(mem.zero(GuestAddress(s.paddr + s.file_size), s.mem_size - s.file_size),
                     "zeroing ELF segment at {:#x}", s.paddr);
    }
    return {};
}

Result<void> write_start_info(const GuestMemory& mem, const BootInfo& info) {
    const auto& map = mem.memory_map();
    if (map.size() > pvh::kMaxMemmapEntries)
        return fail("guest memory map has {} ranges; the PVH memmap area holds {}", map.size(),
                    pvh::kMaxMemmapEntries);
    for (size_t i = 0; i < map.size(); ++i) {
        const pvh::MemmapEntry e{map[i].start, map[i].size, e820_type(map[i].kind), 0};
        KILN_TRY(mem.write_obj(GuestAddress(pvh::kMemmapAddr + i * sizeof(pvh::MemmapEntry)), e));
    }
    pvh::StartInfo si{};
    si.magic = pvh::kStartInfoMagic;
    si.version = pvh::kStartInfoVersion;
    si.cmdline_paddr = layout::kCmdline;
    si.memmap_paddr = pvh::kMemmapAddr;
    si.memmap_entries = static_cast<uint32_t>(map.size());
    si.rsdp_paddr = info.acpi_rsdp; // 0: no ACPI
    if (info.initrd_size > 0) {
        KILN_TRY(mem.write_obj(GuestAddress(pvh::kModlistAddr),
                               pvh::ModlistEntry{info.initrd_start, info.initrd_size, 0, 0}));
        si.nr_modules = 1;
        si.modlist_paddr = pvh::kModlistAddr;
    }
    KILN_TRY(mem.write_obj(GuestAddress(pvh::kStartInfoAddr), si));
    return {};
}

} // namespace

Result<BootInfo> load_pvh(const GuestMemory& mem, const BootRequest& req) {
    if (!req.dtb.empty())
        return fail("a device tree cannot be passed to a PVH kernel (hvm_start_info has no place for one); "
                    "use the kernel's bzImage");
    const elf::PvhImage img = KILN_TRY(elf::parse_pvh(req.kernel));
    const uint64_t ram_end = KILN_TRY(low_ram_end(mem));
    KILN_TRY(check_segments(mem, img, ram_end));

    BootInfo info;
    info.format = KernelFormat::PvhElf;
    info.kernel_start = UINT64_MAX;
    for (const auto& s : img.segments) {
        info.kernel_start = std::min(info.kernel_start, s.paddr);
        info.kernel_end = std::max(info.kernel_end, s.paddr + s.mem_size);
    }
    if (img.entry < info.kernel_start || img.entry >= info.kernel_end)
        return fail("PVH entry point {:#x} is outside the kernel's segments [{:#x}, {:#x})", img.entry,
                    info.kernel_start, info.kernel_end);

    KILN_TRY(write_segments(mem, req.kernel, img));
    KILN_TRY(write_cmdline(mem, req.cmdline, layout::kCmdlineMax - 1));
    if (!req.initrd.empty()) {
        info.initrd_start = KILN_TRY(place_initrd(mem, req.initrd, info.kernel_end, ram_end));
        info.initrd_size = req.initrd.size();
    }
    if (req.acpi) info.acpi_rsdp = acpi::kRsdpAddress;
    KILN_TRY_CTX(write_start_info(mem, info), "writing hvm_start_info");

    info.cpu = KILN_TRY(boot_cpu::protected_mode_state(mem));
    info.cpu.rip = img.entry;
    info.cpu.rbx = pvh::kStartInfoAddr;
    return info;
}

} // namespace kiln::firmware
