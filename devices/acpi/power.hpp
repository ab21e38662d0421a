// The hardware-reduced ACPI power button and power-off (firmware/acpi.hpp describes
// them to the guest):
//
// - AcpiGed, the Generic Event Device's event register (one page of MMIO, the 32-bit
//   register at offset 0). notify() sets event bits and pulses the GED's interrupt; the
//   guest's _EVT reads the register, which clears the bits it returned, and notifies the
//   power button device for layout::kAcpiGedPowerButton. A guest without an interrupt
//   handler for it (the test guest) can poll the same register.
// - AcpiSleepControl, the FADT's SLEEP_CONTROL_REG / SLEEP_STATUS_REG port: a control
//   write with SLP_EN and SLP_TYP = 5 (the DSDT's \_S5) ends the VM as a power-off.
#pragma once

#include <atomic>
#include <cstdint>

#include "vmm/base/vm_exit.hpp"
#include "vmm/bus/bus.hpp"
#include "vmm/bus/irq_line.hpp"

namespace kiln {

class AcpiGed final : public BusDevice {
public:
    explicit AcpiGed(IrqLine& irq) : irq_(irq) {}

    // Sets `events` pending and raises the interrupt (one edge). Thread-safe: an API
    // thread presses the button while vCPU threads read the register.
    void notify(uint32_t events);
    void press_power_button();
    // The events set and not yet read by the guest.
    [[nodiscard]] uint32_t pending() const { return events_.load(std::memory_order_acquire); }

    // Bytes of the event register at offsets 0..3 (any width); reading clears the bits
    // it returned. Everything else in the window reads 0 and ignores writes.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t, std::span<const uint8_t>) override {}

private:
    IrqLine& irq_;
    std::atomic<uint32_t> events_{0};
};

class AcpiSleepControl final : public BusDevice {
public:
    explicit AcpiSleepControl(VmExitSink& exits) : exits_(exits) {}

    enum class Request : uint8_t {
        None,        // SLP_EN clear: not a sleep request (Linux first writes WAK_STS to the
                     // status register, the same port)
        PowerOff,    // SLP_EN with SLP_TYP = 5: S5, soft off
        Unsupported, // SLP_EN with another SLP_TYP: S1..S4, which Kiln does not offer
    };
    // What a byte written to SLEEP_CONTROL_REG asks for (ACPI 6.3 section 4.8.3.7:
    // SLP_TYPx in bits 4:2, SLP_EN bit 5).
    [[nodiscard]] static Request decode(uint8_t value);

    // Reads 0: WAK_STS (bit 7 of SLEEP_STATUS_REG) never sets, the VM never wakes.
    void read(uint64_t, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    VmExitSink& exits_;
    std::atomic<bool> warned_{false}; // one warning per VM: the guest cannot flood the log
};

} // namespace kiln
