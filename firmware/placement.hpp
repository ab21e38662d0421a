// Where the loaders put what they are handed: the command line, the initrd, and the
// limits both formats share (the RAM below the 32-bit MMIO hole).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::firmware {

inline constexpr uint64_t kPageSize = 4096;

// The e820 / PVH memmap type of a memory-map range (1 = RAM, 2 = reserved: the values
// of both the e820 spec and Xen's hvm_memmap_table_entry).
[[nodiscard]] constexpr uint32_t e820_type(MemoryRange::Kind k) { return k == MemoryRange::Kind::Ram ? 1 : 2; }

// The end of the RAM range that starts the kernel area (the one containing 1 MiB). The
// kernel, initrd and everything the 32-bit boot paths point at live below it; it is at
// most layout::kMmioHoleStart.
[[nodiscard]] Result<uint64_t> low_ram_end(const GuestMemory& mem);

// Writes the NUL-terminated command line at layout::kCmdline. `kernel_max` is the
// longest the kernel accepts (bzImage: the header's cmdline_size), without the NUL.
[[nodiscard]] Result<void> write_cmdline(const GuestMemory& mem, std::string_view cmdline, uint64_t kernel_max);

// Copies the initrd to the highest page-aligned address where it ends at or below
// `limit` and starts at or above `floor` (the kernel's end). Returns its address.
// Placing it high keeps it clear of the kernel as it decompresses and grows.
[[nodiscard]] Result<uint64_t> place_initrd(const GuestMemory& mem, std::span<const uint8_t> initrd, uint64_t floor,
                                            uint64_t limit);

} // namespace kiln::firmware
