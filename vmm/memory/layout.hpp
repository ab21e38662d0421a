// The guest-physical address map of a Kiln x86-64 machine. One place, so firmware tables,
// memslots, e820 and device placement agree.
#pragma once

#include <cstdint>

namespace kiln::layout {

inline constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

// Low memory, below the EBDA. Firmware structures live here.
inline constexpr uint64_t kBootGdt = 0x500;            // boot GDT (bzImage 64-bit entry, PVH)
inline constexpr uint64_t kBootIdt = 0x520;            // an empty IDT for the boot vCPU
inline constexpr uint64_t kPvhStartInfo = 0x6000;      // hvm_start_info + memmap + modlist
inline constexpr uint64_t kZeroPage = 0x7000;          // Linux boot_params ("zero page")
inline constexpr uint64_t kBootStack = 0x8ff0;         // initial stack for the boot vCPU
inline constexpr uint64_t kPml4 = 0x9000;              // identity page tables for 64-bit entry
inline constexpr uint64_t kPdpt = 0xa000;
inline constexpr uint64_t kPd = 0xb000;                // 4 pages: 0xb000..0xefff map 4 GiB
inline constexpr uint64_t kCmdline = 0x20000;          // kernel command line
inline constexpr uint64_t kCmdlineMax = 0x10000;       // 64 KiB, including the NUL
inline constexpr uint64_t kEbdaStart = 0x9fc00;        // the last KiB of base memory (EBDA)
// e820: usable RAM ends here and the legacy area is reserved up to 1 MiB. Page-aligned
// (not 0x9fc00) so every memslot and RAM range is a whole number of pages.
inline constexpr uint64_t kLowRamEnd = 0x9f000;
inline constexpr uint64_t kMpTable = 0x9fc00;          // MP floating pointer + config table
inline constexpr uint64_t kHighMemory = 0x100000;      // 1 MiB: kernels load here
// Linux setup_data (SETUP_DTB and friends), after the command line, in usable RAM the
// kernel reserves itself once it has read it.
inline constexpr uint64_t kSetupData = 0x30000;
inline constexpr uint64_t kSetupDataEnd = 0x90000;
// ACPI tables, RSDP first (16-byte aligned): inside the BIOS area Linux scans when the
// loader passes no RSDP pointer, below the MP table's overflow area at 0xf0000.
inline constexpr uint64_t kAcpiTables = 0xe0000;
inline constexpr uint64_t kAcpiTablesEnd = 0xf0000;

// The 32-bit MMIO hole: guest RAM never occupies [kMmioHoleStart, 4 GiB).
inline constexpr uint64_t kMmioHoleStart = 3 * GiB;
inline constexpr uint64_t kMmioHoleEnd = 4 * GiB;
// virtio-mmio devices: one 4 KiB register window each from the start of the hole's
// device area, device i at kVirtioMmioBase + i * kVirtioMmioStride on GSI
// kVirtioMmioFirstGsi + i (IOAPIC pins 5..23, edge-triggered, active high).
inline constexpr uint64_t kVirtioMmioBase = 0xd0000000;
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint32_t kVirtioMmioFirstGsi = 5;
inline constexpr uint32_t kVirtioMmioMaxDevices = 19;
// The ACPI Generic Event Device (the hardware-reduced power button): one page of MMIO
// whose first 32-bit register holds the pending events (read clears them), below the
// IOAPIC, and its interrupt on IOAPIC pin 3 (ISA IRQ 3 is COM2's on a PC; Kiln has no
// COM2, and pins 5..23 are the virtio-mmio devices'), edge-triggered, active high.
inline constexpr uint64_t kAcpiGedBase = 0xfe000000;
inline constexpr uint64_t kAcpiGedSize = 0x1000;
inline constexpr uint32_t kAcpiGedGsi = 3;
// Event bits of that register, as the DSDT's _EVT decodes them. The power button is
// bit 1, as in QEMU's GED (ACPI_GED_PWR_DOWN_EVT), so one guest polls both.
inline constexpr uint32_t kAcpiGedPowerButton = 1u << 1;
inline constexpr uint64_t kIoApic = 0xfec00000;
inline constexpr uint64_t kLapic = 0xfee00000;
// KVM needs three pages for the TSS and one for the EPT identity map (real-mode
// emulation on Intel); both sit inside the hole, below the BIOS ROM area.
inline constexpr uint64_t kKvmIdentityMap = 0xfeffc000;
inline constexpr uint64_t kKvmTss = 0xfeffd000;

// Legacy I/O ports.
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint32_t kCom1Irq = 4;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
// Same port as QEMU's isa-debug-exit default iobase, so one test guest runs under both.
inline constexpr uint16_t kDebugExitPort = 0x501;
// The FADT's hardware-reduced SLEEP_CONTROL_REG and SLEEP_STATUS_REG (ACPI 6.3
// sections 4.8.3.7 and 4.8.3.8): one byte-wide port for both, as in Cloud Hypervisor.
// A control write of SLP_EN with SLP_TYP = the DSDT's _S5 value powers the VM off.
inline constexpr uint16_t kAcpiSleepPort = 0x3c0;
inline constexpr uint8_t kAcpiSleepTypeShift = 2, kAcpiSleepTypeMask = 0x1c; // SLP_TYPx, bits 4:2
inline constexpr uint8_t kAcpiSleepEnable = 1u << 5;                         // SLP_EN
inline constexpr uint8_t kAcpiS5SleepType = 5;                               // Name (_S5, Package () {5, 0})

} // namespace kiln::layout
