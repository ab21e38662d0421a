#include "vmm/machine/device_manager.hpp"

#include <spdlog/spdlog.h>

#include "vmm/memory/layout.hpp"

#include <linux/virtio_mmio.h>

namespace kiln {

void KvmIrqLine::set_level(bool asserted) {
    if (auto r = vm_.irq_line(gsi_, asserted); !r) spdlog::error("{}", r.error().message());
}

void KvmIrqLine::trigger() {
    set_level(true);
    set_level(false);
}

Result<std::unique_ptr<IrqfdLine>> IrqfdLine::create(const Vm& vm, uint32_t gsi) {
    auto fd = KILN_TRY(EventFd::create());
    KILN_TRY(vm.add_irqfd(gsi, fd.get()));
    return std::unique_ptr<IrqfdLine>(new IrqfdLine(std::move(fd)));
}

Result<void> DeviceManager::add_virtio_mmio(const Vm& vm, const GuestMemory& mem, const firmware::VirtioMmioDesc& slot,
                                            std::unique_ptr<virtio::Device> device,
                                            std::function<void(const std::string&)> on_error) {
    if (slot.size < virtio::kMmioWindowSize)
        return fail("{}: a virtio-mmio window of {:#x} bytes is smaller than the transport's {:#x}", device->name(),
                    slot.size, virtio::kMmioWindowSize);
    const std::string name(device->name());
    auto& irq = *irqs_.emplace_back(KILN_TRY_CTX(IrqfdLine::create(vm, slot.gsi), "{} interrupt", name));
    auto transport = KILN_TRY(virtio::MmioTransport::create(std::move(device), mem, irq));
    transport->set_error_sink(std::move(on_error));
    for (uint16_t q = 0; q < transport->num_queues(); ++q)
        KILN_TRY_CTX(vm.add_ioeventfd(slot.base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q, transport->kick_fd(q)),
                     "{} queue {} notifier", name, q);
    KILN_TRY(mmio_.insert(*transport, slot.base, slot.size, name));
    devices_.push_back(std::move(transport));
    return {};
}

Result<void> DeviceManager::add_acpi_power(const Vm& vm, const firmware::AcpiPowerDesc& power, VmExitSink& exits) {
    auto& irq = *irqs_.emplace_back(KILN_TRY_CTX(IrqfdLine::create(vm, power.ged_gsi), "ACPI GED interrupt"));
    auto ged = std::make_unique<AcpiGed>(irq);
    KILN_TRY(mmio_.insert(*ged, power.ged_base, power.ged_size, "acpi-ged"));
    acpi_ged_ = ged.get();
    devices_.push_back(std::move(ged));

    auto sleep = std::make_unique<AcpiSleepControl>(exits);
    KILN_TRY(pio_.insert(*sleep, power.sleep_port, 1, "acpi-sleep"));
    devices_.push_back(std::move(sleep));
    return {};
}

Result<void> DeviceManager::add_legacy_devices(const Vm& vm, ByteSink& console, VmExitSink& exits) {
    auto& com1_irq = *irqs_.emplace_back(std::make_unique<KvmIrqLine>(vm, layout::kCom1Irq));
    auto serial = std::make_unique<Serial8250>(com1_irq, console);
    serial_ = serial.get();
    KILN_TRY(pio_.insert(*serial, layout::kCom1Port, 8, "com1"));
    devices_.push_back(std::move(serial));

    auto i8042 = std::make_unique<I8042>(exits);
    // One range over 0x60..0x64; 0x61 (speaker/NMI status) is served by the in-kernel
    // PIT before it ever reaches us.
    KILN_TRY(pio_.insert(*i8042, layout::kI8042DataPort, 5, "i8042"));
    devices_.push_back(std::move(i8042));

    auto debug_exit = std::make_unique<DebugExit>(exits);
    KILN_TRY(pio_.insert(*debug_exit, layout::kDebugExitPort, 2, "debug-exit"));
    devices_.push_back(std::move(debug_exit));
    return {};
}

} // namespace kiln
