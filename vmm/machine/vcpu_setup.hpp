// Putting a fresh vCPU into the state a kernel expects at its entry point.
#pragma once

#include "firmware/boot.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/kvm/vcpu.hpp"

namespace kiln {

// CPUID, boot MSRs, FPU and the local APIC's LINT0/LINT1 wiring: every vCPU.
[[nodiscard]] Result<void> setup_vcpu_common(const Vcpu& vcpu, const CpuidEntries& cpuid);

// Registers and segments from the firmware's BootCpuState: the boot vCPU only. The
// others wait for INIT/SIPI in the in-kernel LAPIC.
[[nodiscard]] Result<void> setup_boot_vcpu(const Vcpu& vcpu, const firmware::BootCpuState& state);

} // namespace kiln
