// ACPI tables for the machine a Platform describes, for kernels that find their CPUs,
// interrupt controllers and devices through ACPI (Debian's cloud kernel has neither
// the MP-table parser nor virtio-mmio command-line devices).
//
// A hardware-reduced ACPI 6.3 machine, as Firecracker and QEMU microvm describe theirs:
//   RSDP (revision 2) -> XSDT -> FACP (FADT, HW_REDUCED_ACPI, no FACS, X_DSDT) -> DSDT
//                             -> APIC (MADT: every vCPU's local APIC, the IOAPIC)
// The DSDT holds one LNRO0005 device per virtio-mmio device (the ACPI ID Linux's
// virtio_mmio driver matches) with its Memory32Fixed window and edge/active-high
// Interrupt, COM1 as PNP0501 with its I/O ports and IRQ, and the power button the
// hardware-reduced way (ACPI 6.3 section 5.6.9, as Cloud Hypervisor and QEMU microvm do
// it): a Generic Event Device \_SB.GED_ (ACPI0013) with an edge/active-high Interrupt
// and an _EVT method that reads its event register (OperationRegion EREG, Field ESEL)
// and, for the power button bit, does Notify (PWRB, 0x80) on \_SB.PWRB (PNP0C0C);
// plus \_S5 = Package () {5, 0}. The FADT's SLEEP_CONTROL_REG / SLEEP_STATUS_REG name
// the I/O port where the guest writes SLP_TYP = 5 | SLP_EN to power off.
//
// No Interrupt Source Overrides: Kiln keeps KVM's default GSI routing, ISA IRQ n ->
// IOAPIC pin n (the PIT on pin 0), exactly what the MP table says. (QEMU reroutes GSI 0
// to pin 2 and so needs an IRQ0 -> GSI2 override; Firecracker and kvmtool, like Kiln,
// do not.) A hardware-reduced FADT also makes Linux skip the PIT and the 8259s.
//
// All tables go at layout::kAcpiTables (0xe0000, RSDP first, 16-byte aligned): inside
// the BIOS area Linux scans for "RSD PTR " when the loader passes no pointer, and
// reserved in the e820 map.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "firmware/platform.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln::firmware::acpi {

// Where the RSDP goes: the start of the ACPI area (build()'s default base).
inline constexpr uint64_t kRsdpAddress = layout::kAcpiTables;

struct Table {
    std::string signature;       // "RSDP" for the root pointer, else the table's own signature
    uint64_t address = 0;        // guest-physical
    std::vector<uint8_t> bytes;  // the whole table, checksums filled
};

struct Tables {
    uint64_t rsdp_address = 0;
    std::vector<Table> tables;   // RSDP, XSDT, FACP, DSDT, APIC, in address order
    [[nodiscard]] const Table* find(std::string_view signature) const;
    [[nodiscard]] uint64_t end() const; // one past the last table's last byte
};

// Builds every table for `platform` (validated first), laid out from `base`. Fails with
// a clear message when they do not fit below `limit`.
[[nodiscard]] Result<Tables> build(const Platform& platform, uint64_t base = kRsdpAddress,
                                   uint64_t limit = layout::kAcpiTablesEnd);

// The DSDT's Device (GED_) for `power`, alone: for the tests.
[[nodiscard]] std::vector<uint8_t> ged_device(const AcpiPowerDesc& power);

// Writes the tables into guest memory at their addresses.
[[nodiscard]] Result<void> write(const GuestMemory& mem, const Tables& tables);

// build() then write(): the RSDP's guest-physical address.
[[nodiscard]] Result<uint64_t> build_and_write(const GuestMemory& mem, const Platform& platform);

// `kiln run --dump-acpi DIR`: each table to DIR/<SIGNATURE>.aml (DSDT.aml, APIC.aml,
// FACP.aml, XSDT.aml, RSDP.aml), the names `iasl -d` and acpixtract use. Creates DIR
// if it does not exist.
[[nodiscard]] Result<void> dump(const Tables& tables, const std::string& dir);

// The mod-256 sum of a table's bytes: 0 for a correct table.
[[nodiscard]] uint8_t byte_sum(const std::vector<uint8_t>& bytes, size_t len = SIZE_MAX);

// Table layout constants, public for the tests.
inline constexpr uint8_t kFadtRevision = 6, kFadtMinorRevision = 3; // ACPI 6.3
inline constexpr uint8_t kMadtRevision = 5;                         // ACPI 6.3
inline constexpr uint8_t kDsdtRevision = 2;                         // 64-bit integers
inline constexpr uint8_t kXsdtRevision = 1;
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
inline constexpr uint32_t kFadtPowerButton = 1u << 4; // no fixed power button
inline constexpr uint32_t kFadtSleepButton = 1u << 5; // no fixed sleep button
inline constexpr uint16_t kIapcVgaNotPresent = 1u << 2, kIapcMsiNotSupported = 1u << 3,
                          kIapcPcieAspmControls = 1u << 4, kIapcCmosRtcNotPresent = 1u << 5;
inline constexpr uint32_t kMadtPcatCompat = 1;
inline constexpr size_t kRsdpSize = 36, kFadtSize = 276;
inline constexpr size_t kFadtSleepControlOffset = 244, kFadtSleepStatusOffset = 256; // ACPI 6.3 table 5-34
inline constexpr uint8_t kGasSystemIo = 1, kGasByteAccess = 1;
inline constexpr uint8_t kNotifyPowerButton = 0x80; // the button was pressed (ACPI 6.3 section 4.8.3.1.1)

} // namespace kiln::firmware::acpi
