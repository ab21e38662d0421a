// Vcpu: one KVM vCPU fd and its shared kvm_run area.
#pragma once

#include <cstdint>
#include <span>

#include <linux/kvm.h>

#include "vmm/base/fd.hpp"
#include "vmm/base/mmap_region.hpp"
#include "vmm/base/result.hpp"

namespace kiln {

class CpuidEntries;

class Vcpu {
public:
    Vcpu(uint32_t id, Fd fd, MmapRegion run) : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}

    [[nodiscard]] uint32_t id() const { return id_; }
    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] kvm_run* run_area() const { return reinterpret_cast<kvm_run*>(run_.data()); }

    // KVM_RUN. Returns the errno on failure (EINTR when kicked by a signal or
    // immediate_exit), 0 on a normal exit to userspace.
    [[nodiscard]] int run() const;

    [[nodiscard]] Result<kvm_regs> get_regs() const;
    [[nodiscard]] Result<void> set_regs(const kvm_regs& r) const;
    [[nodiscard]] Result<kvm_sregs> get_sregs() const;
    [[nodiscard]] Result<void> set_sregs(const kvm_sregs& s) const;
    [[nodiscard]] Result<void> set_fpu(const kvm_fpu& f) const;
    [[nodiscard]] Result<void> set_cpuid(const CpuidEntries& c) const;
    [[nodiscard]] Result<void> set_msrs(std::span<const kvm_msr_entry> msrs) const;
    [[nodiscard]] Result<kvm_lapic_state> get_lapic() const;
    [[nodiscard]] Result<void> set_lapic(const kvm_lapic_state& l) const;
    // Guest-virtual to guest-physical through the vCPU's current page tables.
    [[nodiscard]] Result<uint64_t> translate(uint64_t gva) const;
    // TSC frequency in kHz (KVM_GET_TSC_KHZ), 0 if unknown.
    [[nodiscard]] uint32_t tsc_khz() const;

private:
    uint32_t id_;
    Fd fd_;
    MmapRegion run_;
};

} // namespace kiln
