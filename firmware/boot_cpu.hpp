// The boot vCPU's starting state: the boot GDT, the identity page tables for the 64-bit
// entry, and the register values that go with them.
//
// The segment registers are derived from the very descriptors written to the GDT, so the
// hidden (cached) state KVM loads and what the guest would read back with a selector
// load always agree.
#pragma once

#include <array>
#include <cstdint>

#include "firmware/boot.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::firmware::boot_cpu {

// Control-register and EFER bits.
inline constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;
inline constexpr uint64_t kRflagsReserved = 1ull << 1; // bit 1 is always set

// Descriptor access/flags words in the layout gdt_entry() takes: bits 0-7 are the access
// byte (P, DPL, S, type), bits 12-15 the flags nibble (G, D/B, L, AVL).
inline constexpr uint16_t kCode64Flags = 0xa09b; // G, L, P, S, execute/read accessed
inline constexpr uint16_t kCode32Flags = 0xc09b; // G, D, P, S, execute/read accessed
inline constexpr uint16_t kDataFlags = 0xc093;   // G, B, P, S, read/write accessed
inline constexpr uint16_t kTssFlags = 0x008b;    // P, busy 32/64-bit TSS, byte granular
inline constexpr uint32_t kTssLimit = 0x67;      // a TSS without I/O bitmap

// Selectors. The 64-bit boot protocol names __BOOT_CS = 0x10 and __BOOT_DS = 0x18;
// the PVH ABI names none, so PVH uses the first slots.
namespace bz_selector {
inline constexpr uint16_t kTss = 0x08, kCode = 0x10, kData = 0x18;
}
namespace pvh_selector {
inline constexpr uint16_t kCode = 0x08, kData = 0x10, kTss = 0x18;
}

// The boot GDT has four entries: that is the room between layout::kBootGdt and
// layout::kBootIdt.
inline constexpr size_t kGdtEntries = 4;
using Gdt = std::array<uint64_t, kGdtEntries>;

// A segment descriptor from a flags word (see above), base and 20-bit limit.
[[nodiscard]] constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
    return ((uint64_t{base} & 0xff000000u) << 32) | ((uint64_t{flags} & 0xf0ffu) << 40) |
           ((uint64_t{limit} & 0x000f0000u) << 32) | ((uint64_t{base} & 0x00ffffffu) << 16) |
           (uint64_t{limit} & 0x0000ffffu);
}

// The hidden segment state a selector load of `desc` would produce. The limit is in
// bytes (scaled by G), which is what KVM's kvm_segment carries.
[[nodiscard]] Segment segment_from_descriptor(uint64_t desc, uint16_t selector);

// The two GDTs, as written to layout::kBootGdt.
[[nodiscard]] Gdt long_mode_gdt();
[[nodiscard]] Gdt protected_mode_gdt();

// Identity-maps the low 4 GiB with 2 MiB pages: PML4 -> one PDPT -> four PDs at
// layout::kPml4 / kPdpt / kPd. Returns the CR3 value.
[[nodiscard]] Result<uint64_t> write_identity_page_tables(const GuestMemory& mem);

// Writes the boot GDT (and page tables for long mode) and returns the state for the
// Linux 64-bit entry: long mode, paging on, flat segments, RIP/RSI/RSP left to the caller.
[[nodiscard]] Result<BootCpuState> long_mode_state(const GuestMemory& mem);

// Writes the boot GDT and returns the PVH entry state: 32-bit protected mode, paging off,
// flat 4 GiB segments, a busy 32-bit TSS; RIP and RBX left to the caller.
[[nodiscard]] Result<BootCpuState> protected_mode_state(const GuestMemory& mem);

} // namespace kiln::firmware::boot_cpu
