// The Intel MultiProcessor Specification 1.4 table: how a kernel without ACPI finds
// every vCPU, the IOAPIC and the ISA interrupt wiring.
//
// The floating pointer always sits at layout::kMpTable (0x9fc00, the last KiB of base
// memory, one of the places the spec says to search). The configuration table follows
// it when it fits in that KiB (up to kMaxCpusInEbda vCPUs); for more vCPUs it goes to
// kMpConfigHigh (0xf0000, the BIOS area, also reserved in e820). Both are below 1 MiB.
#pragma once

#include <cstddef>
#include <cstdint>

#include "firmware/platform.hpp"
#include "vmm/base/result.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace kiln::firmware::mptable {

// xAPIC IDs are 8 bits, 0xff is broadcast, and the IOAPIC takes the ID after the last
// vCPU: at most 254 vCPUs.
inline constexpr uint32_t kMaxCpus = Platform::kMaxCpus;
inline constexpr uint64_t kMpConfigHigh = 0xf0000;
inline constexpr uint64_t kMpAreaEnd = 0xa0000;   // end of the KiB at layout::kMpTable
inline constexpr uint64_t kMpConfigHighEnd = 0x100000;

inline constexpr uint8_t kSpecRev = 4;            // MP spec 1.4
inline constexpr uint8_t kLapicVersion = 0x14;    // what KVM's local APIC reports
inline constexpr uint8_t kIoApicVersion = 0x11;   // what KVM's IOAPIC reports
inline constexpr uint32_t kCpuSignature = 0x600;  // family 6; only informative
inline constexpr uint32_t kCpuFeatures = 0x201;   // FPU | APIC, as kvmtool
inline constexpr uint8_t kIsaBusId = 0;
inline constexpr uint8_t kIsaIrqs = 16;

enum EntryType : uint8_t { kProcessor = 0, kBus = 1, kIoApic = 2, kIoInterrupt = 3, kLocalInterrupt = 4 };
enum InterruptType : uint8_t { kInt = 0, kNmi = 1, kSmi = 2, kExtInt = 3 };
inline constexpr uint8_t kCpuEnabled = 0x01, kCpuBootProcessor = 0x02;
inline constexpr uint8_t kIoApicEnabled = 0x01;
inline constexpr uint8_t kAllLocalApics = 0xff;

struct [[gnu::packed]] FloatingPointer {
    char signature[4];          // "_MP_"
    uint32_t config_table;      // physical address of the configuration table
    uint8_t length;             // in 16-byte units: 1
    uint8_t spec_rev;
    uint8_t checksum;           // all 16 bytes sum to 0
    uint8_t feature[5];         // feature[0] = 0: a configuration table is present
};
static_assert(sizeof(FloatingPointer) == 16);
static_assert(offsetof(FloatingPointer, config_table) == 4 && offsetof(FloatingPointer, checksum) == 10);

struct [[gnu::packed]] ConfigHeader {
    char signature[4];          // "PCMP"
    uint16_t length;            // base table length, header included
    uint8_t spec_rev;
    uint8_t checksum;           // the base table sums to 0
    char oem_id[8];
    char product_id[12];
    uint32_t oem_table;
    uint16_t oem_table_size;
    uint16_t entry_count;
    uint32_t lapic_address;
    uint16_t ext_table_length;
    uint8_t ext_table_checksum;
    uint8_t reserved;
};
static_assert(sizeof(ConfigHeader) == 44);
static_assert(offsetof(ConfigHeader, entry_count) == 34 && offsetof(ConfigHeader, lapic_address) == 36);

struct [[gnu::packed]] ProcessorEntry {
    uint8_t type;
    uint8_t lapic_id;
    uint8_t lapic_version;
    uint8_t cpu_flags;
    uint32_t cpu_signature;
    uint32_t feature_flags;
    uint32_t reserved[2];
};
static_assert(sizeof(ProcessorEntry) == 20);
static_assert(offsetof(ProcessorEntry, cpu_signature) == 4 && offsetof(ProcessorEntry, feature_flags) == 8);

struct [[gnu::packed]] BusEntry {
    uint8_t type;
    uint8_t bus_id;
    char bus_type[6];           // "ISA   "
};
static_assert(sizeof(BusEntry) == 8);

struct [[gnu::packed]] IoApicEntry {
    uint8_t type;
    uint8_t id;
    uint8_t version;
    uint8_t flags;
    uint32_t address;
};
static_assert(sizeof(IoApicEntry) == 8 && offsetof(IoApicEntry, address) == 4);

// I/O interrupt assignment (type 3) and local interrupt assignment (type 4) share a shape.
struct [[gnu::packed]] InterruptEntry {
    uint8_t type;
    uint8_t interrupt_type;
    uint16_t flags;             // polarity and trigger; 0 = as the bus defines (ISA: edge, high)
    uint8_t source_bus;
    uint8_t source_irq;
    uint8_t dest_id;            // IOAPIC ID, or local APIC ID (0xff: all)
    uint8_t dest_pin;           // IOAPIC INTIN#, or LINT#
};
static_assert(sizeof(InterruptEntry) == 8 && offsetof(InterruptEntry, dest_pin) == 7);

struct Placement {
    uint64_t floating_pointer = 0;
    uint64_t config_table = 0;
    uint64_t config_length = 0;
    uint16_t entry_count = 0;
};

// The size of the configuration table for `num_cpus` (header and entries).
[[nodiscard]] uint64_t config_table_size(uint32_t num_cpus);
[[nodiscard]] uint64_t config_table_size(const Platform& platform);

// Writes the floating pointer and configuration table for the platform's vCPUs (APIC
// IDs 0..num_cpus-1, vCPU 0 the bootstrap processor) and IOAPIC. ISA IRQs 0-15 go to
// the IOAPIC's pins 0-15; every virtio-mmio GSI above 15 gets an I/O interrupt entry of
// its own (source: the ISA bus, IRQ = GSI, conforming = edge/active high), as
// Firecracker writes them, so an MP-table kernel can route the
// `virtio_mmio.device=...:GSI` interrupts.
[[nodiscard]] Result<Placement> write(const GuestMemory& mem, const Platform& platform);
// Platform::standard(num_cpus).
[[nodiscard]] Result<Placement> write(const GuestMemory& mem, uint32_t num_cpus);

// The byte sum the spec's checksums make zero.
[[nodiscard]] uint8_t byte_sum(const uint8_t* data, size_t len);

} // namespace kiln::firmware::mptable
