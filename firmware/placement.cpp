#include "firmware/placement.hpp"

#include <algorithm>
#include <cstring>

#include "firmware/bytes.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln::firmware {

Result<uint64_t> low_ram_end(const GuestMemory& mem) {
    for (const auto& r : mem.memory_map()) {
        if (r.kind == MemoryRange::Kind::Ram && r.start <= layout::kHighMemory && layout::kHighMemory < r.end())
            return std::min(r.end(), layout::kMmioHoleStart);
    }
    return fail("guest memory has no RAM at 1 MiB to load a kernel into");
}

Result<void> write_cmdline(const GuestMemory& mem, std::string_view cmdline, uint64_t kernel_max) {
    if (cmdline.find('\0') != std::string_view::npos) return fail("the command line contains a NUL byte");
    if (cmdline.size() >= layout::kCmdlineMax)
        return fail("command line is {} bytes; Kiln's limit is {}", cmdline.size(), layout::kCmdlineMax - 1);
    if (cmdline.size() > kernel_max)
        return fail("command line is {} bytes; this kernel accepts at most {}", cmdline.size(), kernel_max);
    auto dst = KILN_TRY_CTX(mem.slice(GuestAddress(layout::kCmdline), cmdline.size() + 1), "writing the command line");
    if (!cmdline.empty()) std::memcpy(dst.data(), cmdline.data(), cmdline.size());
    dst[cmdline.size()] = 0;
    return {};
}

Result<uint64_t> place_initrd(const GuestMemory& mem, std::span<const uint8_t> initrd, uint64_t floor,
                              uint64_t limit) {
    const uint64_t size = initrd.size();
    const uint64_t lowest = align_up(floor, kPageSize);
    if (size > limit || align_down(limit - size, kPageSize) < lowest)
        return fail("initrd of {} MiB does not fit in guest memory below {:#x} (the kernel ends at {:#x}, "
                    "leaving {} MiB)",
                    mib_ceil(size), limit, floor, limit > lowest ? (limit - lowest) >> 20 : 0);
    const uint64_t addr = align_down(limit - size, kPageSize);
    KILN_TRY_CTX(mem.write(GuestAddress(addr), initrd), "writing the initrd at {:#x}", addr);
    return addr;
}

} // namespace kiln::firmware
