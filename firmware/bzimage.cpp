// The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry.
//
// The protected-mode payload goes to 1 MiB; the real-mode setup code is not run, so the
// loader does its job: it fills boot_params (the "zero page") with the image's setup
// header, the command line, the initrd and the e820 map, and starts the vCPU in long
// mode at startup_64 (payload + 0x200) with RSI pointing at boot_params.
#include <algorithm>
#include <cstring>
#include <vector>

#include "firmware/acpi.hpp"
#include "firmware/boot_cpu.hpp"
#include "firmware/boot_params.hpp"
#include "firmware/bytes.hpp"
#include "firmware/loader.hpp"
#include "firmware/placement.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln::firmware {

namespace {

using namespace linux_boot;

// The header as protocol 2.12 defines it ends after handover_offset.
constexpr uint64_t kHeaderEnd212 = offsetof(SetupHeader, kernel_info_offset) + kSetupHeaderOffset;

// Copies the setup header the way boot.rst prescribes: from 0x1f1 up to 0x202 plus the
// byte at 0x201 (the jump over the header), no more than our struct holds.
Result<BootParams> read_setup_header(std::span<const uint8_t> file, uint64_t setup_size) {
    const uint64_t end = std::min<uint64_t>(kHeaderMagicOffset + file[kJumpOffset],
                                            kSetupHeaderOffset + sizeof(SetupHeader));
    BootParams bp{};
    // setup_size >= 5 sectors (setup_sects 0 reads as 4) > the largest `end`, and the
    // caller checked the file holds setup_size bytes.
    static_assert(kSetupHeaderOffset + sizeof(SetupHeader) <= (kDefaultSetupSects + 1) * kSectorSize);
    if (end > setup_size || end > file.size()) return fail("truncated bzImage setup header");
    std::memcpy(reinterpret_cast<uint8_t*>(&bp) + kSetupHeaderOffset, file.data() + kSetupHeaderOffset,
                end - kSetupHeaderOffset);
    const uint16_t version = bp.hdr.version;
    if (version < kMinVersion)
        return fail("bzImage boot protocol {}.{:02} is too old: Kiln uses the 64-bit entry, which needs 2.12 or newer",
                    version >> 8, version & 0xff);
    if (end < kHeaderEnd212)
        return fail("bzImage setup header is {} bytes, too short for its boot protocol {}.{:02}",
                    end - kSetupHeaderOffset, version >> 8, version & 0xff);
    if (!(bp.hdr.xloadflags & kXlfKernel64))
        return fail("bzImage has no 64-bit entry point (XLF_KERNEL_64 is not set in xloadflags)");
    if (!(bp.hdr.loadflags & kLoadedHigh)) return fail("zImage kernels (not loaded high) are not supported");
    return bp;
}

// Where the kernel ends once it runs. It is loaded at 1 MiB and needs init_size bytes
// from there to decompress, but a relocatable kernel moves itself to pref_address
// (LOAD_PHYSICAL_ADDR, typically 16 MiB) when that is higher, and needs init_size there.
Result<uint64_t> kernel_end(const SetupHeader& hdr, uint64_t payload_size) {
    const uint64_t init_size = hdr.init_size;
    const uint64_t load_end = layout::kHighMemory + std::max(payload_size, init_size);
    uint64_t run_end;
    if (__builtin_add_overflow(uint64_t{hdr.pref_address}, init_size, &run_end))
        return fail("bzImage pref_address {:#x} is out of range", uint64_t{hdr.pref_address});
    return std::max(load_end, run_end);
}

// The setup_data list at layout::kSetupData: one node per blob, 8-byte aligned, linked
// in order. Returns the head's address (0 for no blobs).
struct SetupBlob {
    uint32_t type;
    std::span<const uint8_t> data;
};

Result<uint64_t> write_setup_data(const GuestMemory& mem, std::span<const SetupBlob> blobs) {
    uint64_t at = layout::kSetupData, head = 0, prev = 0;
    for (const auto& b : blobs) {
        const uint64_t need = sizeof(SetupData) + b.data.size();
        if (b.data.size() > UINT32_MAX || need > layout::kSetupDataEnd - at)
            return fail("setup_data of {} bytes (type {}) does not fit in [{:#x}, {:#x})", b.data.size(), b.type,
                        layout::kSetupData, layout::kSetupDataEnd);
        KILN_TRY(mem.write_obj(GuestAddress(at), SetupData{0, b.type, static_cast<uint32_t>(b.data.size())}));
        KILN_TRY(mem.write(GuestAddress(at + sizeof(SetupData)), b.data));
        if (prev != 0) KILN_TRY(mem.write_obj(GuestAddress(prev + offsetof(SetupData, next)), at));
        else head = at;
        prev = at;
        at = align_up(at + need, 8);
    }
    return head;
}

void fill_e820(BootParams& bp, const GuestMemory& mem, size_t count) {
    for (size_t i = 0; i < count; ++i) {
        const auto& r = mem.memory_map()[i];
        bp.e820_table[i] = E820Entry{r.start, r.size, e820_type(r.kind)};
    }
    bp.e820_entries = static_cast<uint8_t>(count);
}

} // namespace

Result<BootInfo> load_bzimage(const GuestMemory& mem, const BootRequest& req) {
    const auto file = req.kernel;
    if (file.size() < kHeaderMagicOffset + 4) return fail("truncated bzImage: {} bytes", file.size());
    const uint8_t sects = file[kSetupHeaderOffset];
    const uint64_t setup_size = (uint64_t{sects == 0 ? kDefaultSetupSects : sects} + 1) * kSectorSize;
    if (file.size() <= setup_size)
        return fail("truncated bzImage: {} bytes of setup code but the file has only {} bytes", setup_size,
                    file.size());
    BootParams bp = KILN_TRY(read_setup_header(file, setup_size));
    const auto payload = file.subspan(setup_size);
    const uint16_t version = bp.hdr.version;
    if (!req.dtb.empty() && version < kSetupDataVersion)
        return fail("a device tree is passed as setup_data, which needs boot protocol 2.09; this bzImage has {}.{:02}",
                    version >> 8, version & 0xff);

    const uint64_t ram_end = KILN_TRY(low_ram_end(mem));
    const uint64_t end = KILN_TRY(kernel_end(bp.hdr, payload.size()));
    if (end > ram_end)
        return fail("kernel does not fit: it needs guest RAM up to {} MiB to load and decompress, but guest RAM "
                    "below the 3 GiB hole ends at {} MiB",
                    mib_ceil(end), ram_end >> 20);
    if (mem.memory_map().size() > kE820MaxEntries)
        return fail("guest memory map has {} ranges; boot_params holds {}", mem.memory_map().size(), kE820MaxEntries);

    KILN_TRY_CTX(mem.write(GuestAddress(layout::kHighMemory), payload), "writing the kernel at 1 MiB");
    KILN_TRY(write_cmdline(mem, req.cmdline, bp.hdr.cmdline_size));

    BootInfo info;
    info.format = KernelFormat::BzImage;
    info.kernel_start = layout::kHighMemory;
    info.kernel_end = end;
    if (!req.initrd.empty()) {
        const uint64_t addr_max = bp.hdr.initrd_addr_max ? bp.hdr.initrd_addr_max : kDefaultInitrdAddrMax;
        const uint64_t limit = std::min(addr_max + 1, ram_end); // addr_max is the last usable byte
        info.initrd_start = KILN_TRY(place_initrd(mem, req.initrd, end, limit));
        info.initrd_size = req.initrd.size();
    }

    bp.hdr.type_of_loader = kLoaderTypeUndefined;
    bp.hdr.loadflags = static_cast<uint8_t>(bp.hdr.loadflags | kCanUseHeap);
    bp.hdr.heap_end_ptr = kHeapEndPtr;
    bp.hdr.cmd_line_ptr = static_cast<uint32_t>(layout::kCmdline);
    bp.ext_cmd_line_ptr = static_cast<uint32_t>(layout::kCmdline >> 32);
    bp.hdr.ramdisk_image = static_cast<uint32_t>(info.initrd_start);
    bp.hdr.ramdisk_size = static_cast<uint32_t>(info.initrd_size);
    bp.ext_ramdisk_image = static_cast<uint32_t>(info.initrd_start >> 32);
    bp.ext_ramdisk_size = static_cast<uint32_t>(info.initrd_size >> 32);
    // Our own setup_data list, or none: never follow what the image had there.
    std::vector<SetupBlob> blobs;
    if (!req.dtb.empty()) blobs.push_back(SetupBlob{kSetupDtb, req.dtb});
    info.setup_data = KILN_TRY_CTX(write_setup_data(mem, blobs), "writing setup_data");
    bp.hdr.setup_data = info.setup_data;
    // 2.14 added the field; an older kernel finds the RSDP by scanning 0xe0000-0xfffff.
    if (req.acpi) info.acpi_rsdp = acpi::kRsdpAddress;
    if (version >= kAcpiRsdpVersion) bp.acpi_rsdp_addr = info.acpi_rsdp;
    fill_e820(bp, mem, mem.memory_map().size());
    KILN_TRY_CTX(mem.write_obj(GuestAddress(layout::kZeroPage), bp), "writing boot_params");

    info.cpu = KILN_TRY(boot_cpu::long_mode_state(mem));
    info.cpu.rip = layout::kHighMemory + kStartup64Offset;
    info.cpu.rsi = layout::kZeroPage;
    info.cpu.rsp = info.cpu.rbp = layout::kBootStack;
    return info;
}

} // namespace kiln::firmware
