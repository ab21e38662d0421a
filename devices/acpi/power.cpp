#include "devices/acpi/power.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "vmm/memory/layout.hpp"

namespace kiln {

void AcpiGed::notify(uint32_t events) {
    events_.fetch_or(events, std::memory_order_acq_rel);
    irq_.trigger();
}

void AcpiGed::press_power_button() { notify(layout::kAcpiGedPowerButton); }

void AcpiGed::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset >= 4) return;
    uint32_t mask = 0;
    for (uint64_t i = offset; i < std::min<uint64_t>(4, offset + data.size()); ++i) mask |= 0xffu << (8 * i);
    const uint32_t v = events_.fetch_and(~mask, std::memory_order_acq_rel) & mask;
    for (uint64_t i = offset; i < std::min<uint64_t>(4, offset + data.size()); ++i)
        data[i - offset] = static_cast<uint8_t>(v >> (8 * i));
}

AcpiSleepControl::Request AcpiSleepControl::decode(uint8_t value) {
    if ((value & layout::kAcpiSleepEnable) == 0) return Request::None;
    const auto type = static_cast<uint8_t>((value & layout::kAcpiSleepTypeMask) >> layout::kAcpiSleepTypeShift);
    return type == layout::kAcpiS5SleepType ? Request::PowerOff : Request::Unsupported;
}

void AcpiSleepControl::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void AcpiSleepControl::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset != 0 || data.empty()) return;
    switch (decode(data[0])) {
    case Request::None: break;
    case Request::PowerOff:
        exits_.request_exit({ExitReason::PowerOff, 0, "the guest powered off (ACPI S5)"});
        break;
    case Request::Unsupported:
        if (warned_.exchange(true)) break;
        spdlog::warn("the guest asked for ACPI sleep state S{} (SLEEP_CONTROL_REG {:#04x}); only S5 exists here, "
                     "it runs on",
                     (data[0] & layout::kAcpiSleepTypeMask) >> layout::kAcpiSleepTypeShift, data[0]);
        break;
    }
}

} // namespace kiln
