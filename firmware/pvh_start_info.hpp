// The PVH boot ABI's start_info: what a PVH kernel finds at EBX on entry.
//
// Written from Xen's xen/include/public/arch-x86/hvm/start_info.h (version 1, which adds
// the memory map) rather than included. Offsets pinned by static_asserts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmm/memory/layout.hpp"

namespace kiln::firmware::pvh {

inline constexpr uint32_t kStartInfoMagic = 0x336ec578; // XEN_HVM_START_MAGIC_VALUE
inline constexpr uint32_t kStartInfoVersion = 1;

struct [[gnu::packed]] StartInfo {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    // version 1:
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};
static_assert(sizeof(StartInfo) == 56);
static_assert(offsetof(StartInfo, nr_modules) == 12 && offsetof(StartInfo, modlist_paddr) == 16);
static_assert(offsetof(StartInfo, cmdline_paddr) == 24 && offsetof(StartInfo, rsdp_paddr) == 32);
static_assert(offsetof(StartInfo, memmap_paddr) == 40 && offsetof(StartInfo, memmap_entries) == 48);

struct [[gnu::packed]] ModlistEntry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};
static_assert(sizeof(ModlistEntry) == 32);

struct [[gnu::packed]] MemmapEntry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;              // e820 types: 1 RAM, 2 reserved
    uint32_t reserved;
};
static_assert(sizeof(MemmapEntry) == 24);

// Everything lives in the page at layout::kPvhStartInfo: start_info, then the one-entry
// module list, then the memory map up to the end of the page.
inline constexpr uint64_t kStartInfoAddr = layout::kPvhStartInfo;
inline constexpr uint64_t kModlistAddr = kStartInfoAddr + 0x40;
inline constexpr uint64_t kMemmapAddr = kStartInfoAddr + 0x80;
inline constexpr uint64_t kAreaEnd = kStartInfoAddr + 0x1000;
inline constexpr size_t kMaxMemmapEntries = (kAreaEnd - kMemmapAddr) / sizeof(MemmapEntry);
static_assert(kModlistAddr >= kStartInfoAddr + sizeof(StartInfo));
static_assert(kMemmapAddr >= kModlistAddr + sizeof(ModlistEntry));
static_assert(kAreaEnd <= layout::kZeroPage);

} // namespace kiln::firmware::pvh
