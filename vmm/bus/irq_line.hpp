// IrqLine: how a device raises its interrupt without knowing about KVM. The machine
// supplies the implementation (KVM_IRQ_LINE today, an irqfd for virtio later); tests
// supply a recording fake.
#pragma once

namespace kiln {

class IrqLine {
public:
    virtual ~IrqLine() = default;
    // Level-triggered lines (ISA devices behind the IOAPIC/PIC): assert or deassert.
    virtual void set_level(bool asserted) = 0;
    // Edge-triggered: one pulse.
    virtual void trigger() = 0;
};

} // namespace kiln
