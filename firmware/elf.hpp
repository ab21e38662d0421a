// Just enough ELF to boot a PVH kernel: the loadable segments and the PVH entry point
// from the XEN_ELFNOTE_PHYS32_ENTRY note.
//
// The layouts are written from the System V gABI (ELF32 and ELF64, little-endian) rather
// than taken from <elf.h>, and every offset, count and size read from the file is
// checked against the file's length before it is used.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/base/result.hpp"

namespace kiln::firmware::elf {

// Xen's ELF note carrying the 32-bit physical entry point of a PVH kernel
// (xen/include/public/elfnote.h).
inline constexpr uint32_t kXenElfNotePhys32Entry = 18;

// A PT_LOAD segment: `file_size` bytes from `offset` in the file go to `paddr`, and the
// rest up to `mem_size` is zeroed (.bss).
struct LoadSegment {
    uint64_t paddr = 0;
    uint64_t offset = 0;
    uint64_t file_size = 0;
    uint64_t mem_size = 0;
};

struct PvhImage {
    bool is_64bit = false;
    uint64_t entry = 0;                // from the PVH note, not e_entry
    std::vector<LoadSegment> segments; // PT_LOAD with mem_size > 0, in file order
};

// True if the file starts with the ELF magic.
[[nodiscard]] bool has_elf_magic(std::span<const uint8_t> file);

// Parses an x86 ELF (ELF32 EM_386 or ELF64 EM_X86_64) that carries a PVH entry note.
// Fails on anything truncated or inconsistent, and on an ELF without the note.
[[nodiscard]] Result<PvhImage> parse_pvh(std::span<const uint8_t> file);

} // namespace kiln::firmware::elf
