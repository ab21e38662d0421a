// Vm: one KVM virtual machine fd and the VM-wide ioctls.
#pragma once

#include <cstdint>

#include "vmm/kvm/kvm.hpp"
#include "vmm/kvm/vcpu.hpp"

namespace kiln {

class Vm {
public:
    [[nodiscard]] static Result<Vm> create(const Kvm& kvm);

    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] Result<void> set_tss_addr(uint64_t addr) const;
    [[nodiscard]] Result<void> set_identity_map_addr(uint64_t addr) const;
    [[nodiscard]] Result<void> create_irqchip() const;
    [[nodiscard]] Result<void> create_pit2() const;
    [[nodiscard]] Result<void> set_memory_region(uint32_t slot, uint64_t guest_phys, uint64_t size,
                                                 void* host, uint32_t flags = 0) const;
    // Level of an interrupt line on the in-kernel irqchip (GSI routing: PIC + IOAPIC).
    [[nodiscard]] Result<void> irq_line(uint32_t gsi, bool level) const;
    // An MMIO write of `len` bytes of value `datamatch` at `addr` signals `fd` inside
    // KVM instead of exiting to userspace (virtio queue notifications).
    [[nodiscard]] Result<void> add_ioeventfd(uint64_t addr, uint32_t len, uint64_t datamatch, int fd) const;
    // Writing to `fd` raises an edge on `gsi` of the in-kernel irqchip.
    [[nodiscard]] Result<void> add_irqfd(uint32_t gsi, int fd) const;
    [[nodiscard]] Result<Vcpu> create_vcpu(const Kvm& kvm, uint32_t id) const;
    [[nodiscard]] Result<void> enable_cap(uint32_t cap, uint64_t arg0 = 0) const;
    [[nodiscard]] int check_extension(long cap) const;

private:
    explicit Vm(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
};

} // namespace kiln
