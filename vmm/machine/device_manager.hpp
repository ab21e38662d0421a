// DeviceManager: the one place that knows both KVM and the devices. It owns every
// device, puts each on its bus and wires its interrupt line to the in-kernel irqchip;
// devices themselves never see the VM.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "devices/acpi/power.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial.hpp"
#include "devices/virtio/mmio.hpp"
#include "firmware/platform.hpp"
#include "vmm/base/event_fd.hpp"
#include "vmm/bus/bus.hpp"
#include "vmm/bus/irq_line.hpp"
#include "vmm/kvm/vm.hpp"

namespace kiln {

// An ISA interrupt line on the in-kernel PIC + IOAPIC (KVM's default GSI routing).
class KvmIrqLine final : public IrqLine {
public:
    KvmIrqLine(const Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void set_level(bool asserted) override;
    void trigger() override;

private:
    const Vm& vm_;
    uint32_t gsi_;
};

// An edge-triggered line behind a KVM irqfd: trigger() is one eventfd write, safe from
// any thread (virtio queue workers), and KVM injects the interrupt itself.
class IrqfdLine final : public IrqLine {
public:
    [[nodiscard]] static Result<std::unique_ptr<IrqfdLine>> create(const Vm& vm, uint32_t gsi);
    void set_level(bool asserted) override {
        if (asserted) trigger(); // an edge line has no level; asserting is an edge
    }
    void trigger() override { fd_.signal(); }

private:
    explicit IrqfdLine(EventFd fd) : fd_(std::move(fd)) {}
    EventFd fd_;
};

class DeviceManager {
public:
    DeviceManager() : pio_("port I/O"), mmio_("MMIO") {}

    // The legacy PC devices: COM1, the i8042 reset line, the debug-exit port.
    [[nodiscard]] Result<void> add_legacy_devices(const Vm& vm, ByteSink& console, VmExitSink& exits);

    // Puts a virtio device behind the virtio-mmio window `slot` describes (the same
    // firmware::Platform entry the boot tables are made from), with an irqfd for its
    // interrupt and an ioeventfd per queue on QueueNotify.
    [[nodiscard]] Result<void> add_virtio_mmio(const Vm& vm, const GuestMemory& mem,
                                               const firmware::VirtioMmioDesc& slot,
                                               std::unique_ptr<virtio::Device> device,
                                               std::function<void(const std::string&)> on_error = {});

    // The ACPI power button and power-off port `power` describes (the Platform entry the
    // ACPI tables are made from): the GED's register window with an irqfd for its
    // interrupt, and the sleep control port.
    [[nodiscard]] Result<void> add_acpi_power(const Vm& vm, const firmware::AcpiPowerDesc& power,
                                              VmExitSink& exits);

    [[nodiscard]] const Bus& pio() const { return pio_; }
    [[nodiscard]] const Bus& mmio() const { return mmio_; }
    [[nodiscard]] Serial8250* serial() const { return serial_; }
    [[nodiscard]] AcpiGed* acpi_ged() const { return acpi_ged_; } // nullptr without ACPI

private:
    Bus pio_, mmio_;
    std::vector<std::unique_ptr<IrqLine>> irqs_;
    std::vector<std::unique_ptr<BusDevice>> devices_;
    Serial8250* serial_ = nullptr;
    AcpiGed* acpi_ged_ = nullptr;
};

} // namespace kiln
