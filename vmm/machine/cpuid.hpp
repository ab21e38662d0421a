// The CPUID a vCPU sees: what KVM supports, with Kiln's per-vCPU fixes (APIC IDs,
// topology leaves, vCPU count, the KVM signature leaf and a TSC-frequency leaf).
#pragma once

#include <cstdint>

#include "vmm/kvm/kvm.hpp"

namespace kiln {

struct CpuidFixes {
    uint32_t vcpu_id = 0;
    uint32_t num_vcpus = 1;
    uint32_t tsc_khz = 0; // 0: leave out the frequency leaf
};

// Pure function of its inputs so it can be unit-tested with a synthetic table.
[[nodiscard]] CpuidEntries fix_cpuid(const CpuidEntries& supported, const CpuidFixes& fixes);

// KVM's hypervisor leaves; 0x40000010 is the de-facto "timing information" leaf
// (VMware's, also given by QEMU): EAX = TSC kHz, EBX = local APIC bus kHz.
inline constexpr uint32_t kCpuidKvmSignature = 0x40000000;
inline constexpr uint32_t kCpuidKvmFeatures = 0x40000001;
inline constexpr uint32_t kCpuidTimingInfo = 0x40000010;
inline constexpr uint32_t kKvmApicBusKhz = 1000000; // KVM's APIC timer ticks at 1 GHz

} // namespace kiln
