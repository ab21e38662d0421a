// The one description of the machine the guest sees: vCPUs, interrupt controllers, the
// legacy serial port, the virtio-mmio devices and the ACPI power button. The MP table, the ACPI tables, the
// device tree and the `virtio_mmio.device=` command-line words are all generated from
// it, so the four ways a kernel can discover the machine never disagree.
//
// Plain data, built by the machine from its configuration (Platform::standard gives
// Kiln's fixed layout, add_virtio_mmio appends the next virtio-mmio slot).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vmm/base/result.hpp"
#include "vmm/memory/layout.hpp"

namespace kiln::firmware {

struct IoApicDesc {
    uint8_t id = 1;                       // Platform::standard: the first APIC ID after the vCPUs
    uint64_t address = layout::kIoApic;
    uint32_t gsi_base = 0;
    uint32_t pins = 24;                   // KVM's in-kernel IOAPIC: KVM_IOAPIC_NUM_PINS
};

struct SerialDesc {
    uint16_t port = layout::kCom1Port;
    uint32_t irq = layout::kCom1Irq;      // ISA IRQ = GSI (identity routing)
};

// A virtio-mmio register window and its interrupt: edge-triggered, active high, on an
// IOAPIC pin (GSI). `name` is only a comment (the DTB node and ACPI device get a name
// derived from the index so they stay valid identifiers).
struct VirtioMmioDesc {
    uint64_t base = 0;
    uint64_t size = layout::kVirtioMmioStride;
    uint32_t gsi = 0;
    std::string name;                     // e.g. "virtio-blk disk0"; informative only
};

// ACPI power management, hardware-reduced: the Generic Event Device (ACPI0013) whose
// _EVT notifies the power button (PNP0C0C), with its event register window and its
// interrupt (edge-triggered, active high, on an IOAPIC pin), and the FADT's sleep
// control/status port, through which a guest enters S5 (powers off).
struct AcpiPowerDesc {
    uint64_t ged_base = layout::kAcpiGedBase;
    uint64_t ged_size = layout::kAcpiGedSize;
    uint32_t ged_gsi = layout::kAcpiGedGsi;
    uint16_t sleep_port = layout::kAcpiSleepPort;
};

struct Platform {
    uint32_t num_cpus = 1;                // APIC IDs 0..num_cpus-1, vCPU 0 boots
    uint64_t lapic_address = layout::kLapic;
    IoApicDesc ioapic;
    // The in-kernel irqchip's dual 8259 (KVM_CREATE_IRQCHIP has one): MADT PCAT_COMPAT.
    bool has_pic = true;
    // No MC146818 at ports 0x70/0x71: the FADT says "CMOS RTC not present" so Linux
    // neither reads the clock there nor registers rtc_cmos (kvmclock keeps the time).
    bool has_cmos_rtc = false;
    std::optional<SerialDesc> com1 = SerialDesc{};
    std::vector<VirtioMmioDesc> virtio_mmio;
    // The power button and S5: described in the ACPI tables only (the MP table and the
    // device tree have no way to say it).
    std::optional<AcpiPowerDesc> acpi_power = AcpiPowerDesc{};

    // Kiln's machine: `num_cpus` vCPUs, the IOAPIC (ID num_cpus, as the MP table has
    // always had it) at layout::kIoApic, the LAPICs at layout::kLapic, COM1 at 0x3f8
    // IRQ 4, no virtio devices yet.
    [[nodiscard]] static Platform standard(uint32_t num_cpus) {
        Platform p;
        p.num_cpus = num_cpus;
        p.ioapic.id = static_cast<uint8_t>(num_cpus); // validate() refuses more than 254
        return p;
    }

    // Appends virtio-mmio device number virtio_mmio.size() at its layout slot:
    // base kVirtioMmioBase + i * kVirtioMmioStride, GSI kVirtioMmioFirstGsi + i.
    // Fails past layout::kVirtioMmioMaxDevices.
    [[nodiscard]] Result<VirtioMmioDesc> add_virtio_mmio(std::string name = {}) {
        const auto i = static_cast<uint32_t>(virtio_mmio.size());
        if (i >= layout::kVirtioMmioMaxDevices)
            return fail("at most {} virtio-mmio devices fit the machine's interrupt lines",
                        layout::kVirtioMmioMaxDevices);
        VirtioMmioDesc d{layout::kVirtioMmioBase + i * layout::kVirtioMmioStride, layout::kVirtioMmioStride,
                         layout::kVirtioMmioFirstGsi + i, std::move(name)};
        virtio_mmio.push_back(d);
        return d;
    }

    // Consistency checks every generator relies on: vCPU count, device windows (virtio,
    // the ACPI GED) inside the 32-bit MMIO hole and disjoint, GSIs on IOAPIC pins and
    // distinct from each other and from COM1's, and the IOAPIC ID distinct from every
    // vCPU's APIC ID.
    [[nodiscard]] Result<void> validate() const {
        if (num_cpus == 0 || num_cpus > kMaxCpus)
            return fail("the machine describes 1 to {} vCPUs, not {}", kMaxCpus, num_cpus);
        if (ioapic.id < num_cpus)
            return fail("IOAPIC ID {} collides with a vCPU's APIC ID (0..{})", ioapic.id, num_cpus - 1);
        if (ioapic.pins == 0 || ioapic.pins > 240) return fail("IOAPIC with {} pins", ioapic.pins);
        auto on_ioapic = [&](uint32_t gsi) { return gsi >= ioapic.gsi_base && gsi - ioapic.gsi_base < ioapic.pins; };
        if (com1 && (com1->irq >= 16 || !on_ioapic(com1->irq)))
            return fail("COM1 IRQ {} is not an ISA IRQ routed to the IOAPIC", com1->irq);
        if (acpi_power) {
            const auto& a = *acpi_power;
            if (a.ged_size < 4 || !in_mmio_hole(a.ged_base, a.ged_size))
                return fail("ACPI GED: window [{:#x}, +{:#x}) is not inside the MMIO hole below the IOAPIC",
                            a.ged_base, a.ged_size);
            if (!on_ioapic(a.ged_gsi)) return fail("ACPI GED: GSI {} is not an IOAPIC pin", a.ged_gsi);
            if (com1 && a.ged_gsi == com1->irq) return fail("ACPI GED: GSI {} is COM1's interrupt", a.ged_gsi);
            if (com1 && a.sleep_port >= com1->port && a.sleep_port < com1->port + 8)
                return fail("ACPI sleep port {:#x} is inside COM1's ports", a.sleep_port);
        }
        for (size_t i = 0; i < virtio_mmio.size(); ++i) {
            const auto& d = virtio_mmio[i];
            if (d.size == 0 || d.size % 0x200 != 0)
                return fail("virtio-mmio device {}: window size {:#x} is not a non-zero multiple of 0x200", i,
                            d.size);
            if (!in_mmio_hole(d.base, d.size))
                return fail("virtio-mmio device {}: window [{:#x}, +{:#x}) is not inside the MMIO hole below the "
                            "IOAPIC",
                            i, d.base, d.size);
            if (!on_ioapic(d.gsi)) return fail("virtio-mmio device {}: GSI {} is not an IOAPIC pin", i, d.gsi);
            if (com1 && d.gsi == com1->irq)
                return fail("virtio-mmio device {}: GSI {} is COM1's interrupt", i, d.gsi);
            if (acpi_power && d.gsi == acpi_power->ged_gsi)
                return fail("virtio-mmio device {}: GSI {} is the ACPI GED's interrupt", i, d.gsi);
            if (acpi_power && d.base < acpi_power->ged_base + acpi_power->ged_size &&
                acpi_power->ged_base < d.base + d.size)
                return fail("virtio-mmio device {} overlaps the ACPI GED at {:#x}", i, d.base);
            for (size_t j = 0; j < i; ++j) {
                const auto& o = virtio_mmio[j];
                if (d.base < o.base + o.size && o.base < d.base + d.size)
                    return fail("virtio-mmio devices {} and {} overlap at {:#x}", j, i, d.base);
                if (d.gsi == o.gsi) return fail("virtio-mmio devices {} and {} share GSI {}", j, i, d.gsi);
            }
        }
        return {};
    }

    // [base, base + size) inside the 32-bit MMIO hole, below the IOAPIC.
    [[nodiscard]] static bool in_mmio_hole(uint64_t base, uint64_t size) {
        return size != 0 && base >= layout::kMmioHoleStart && base < layout::kIoApic &&
               layout::kIoApic - base >= size;
    }

    // xAPIC IDs are 8 bits, 0xff is broadcast, and the IOAPIC takes the ID after the last
    // vCPU (the MP table's limit, mptable::kMaxCpus).
    static constexpr uint32_t kMaxCpus = 254;
};

} // namespace kiln::firmware
