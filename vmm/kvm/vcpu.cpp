#include "vmm/kvm/vcpu.hpp"

#include <algorithm>
#include <cerrno>
#include <vector>
#include <sys/ioctl.h>

#include "vmm/kvm/ioctls.hpp"
#include "vmm/kvm/kvm.hpp"

namespace kiln {

int Vcpu::run() const {
    if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) return errno;
    return 0;
}

Result<kvm_regs> Vcpu::get_regs() const {
    kvm_regs r{};
    if (::ioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return fail_errno("KVM_GET_REGS");
    return r;
}
Result<void> Vcpu::set_regs(const kvm_regs& r) const {
    if (::ioctl(fd_.get(), KVM_SET_REGS, &r) < 0) return fail_errno("KVM_SET_REGS");
    return {};
}
Result<kvm_sregs> Vcpu::get_sregs() const {
    kvm_sregs s{};
    if (::ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return fail_errno("KVM_GET_SREGS");
    return s;
}
Result<void> Vcpu::set_sregs(const kvm_sregs& s) const {
    if (::ioctl(fd_.get(), KVM_SET_SREGS, &s) < 0) return fail_errno("KVM_SET_SREGS");
    return {};
}
Result<void> Vcpu::set_fpu(const kvm_fpu& f) const {
    if (::ioctl(fd_.get(), KVM_SET_FPU, &f) < 0) return fail_errno("KVM_SET_FPU");
    return {};
}

Result<void> Vcpu::set_cpuid(const CpuidEntries& c) const {
    std::vector<uint64_t> buf((sizeof(kvm_abi::CpuidHeader) + c.entries.size() * sizeof(kvm_cpuid_entry2)) / 8 + 1);
    auto* hdr = reinterpret_cast<kvm_abi::CpuidHeader*>(buf.data());
    hdr->nent = static_cast<uint32_t>(c.entries.size());
    std::copy(c.entries.begin(), c.entries.end(), reinterpret_cast<kvm_cpuid_entry2*>(hdr + 1));
    if (::ioctl(fd_.get(), kvm_abi::kSetCpuid2, hdr) < 0) return fail_errno("KVM_SET_CPUID2");
    return {};
}

Result<void> Vcpu::set_msrs(std::span<const kvm_msr_entry> msrs) const {
    std::vector<uint64_t> buf((sizeof(kvm_abi::MsrsHeader) + msrs.size() * sizeof(kvm_msr_entry)) / 8 + 1);
    auto* hdr = reinterpret_cast<kvm_abi::MsrsHeader*>(buf.data());
    hdr->nmsrs = static_cast<uint32_t>(msrs.size());
    std::copy(msrs.begin(), msrs.end(), reinterpret_cast<kvm_msr_entry*>(hdr + 1));
    int n = ::ioctl(fd_.get(), kvm_abi::kSetMsrs, hdr);
    if (n < 0) return fail_errno("KVM_SET_MSRS");
    // KVM stops at the first MSR it refuses and returns how many it set.
    if (static_cast<size_t>(n) != msrs.size())
        return fail("KVM_SET_MSRS: MSR {:#x} was refused", msrs[static_cast<size_t>(n)].index);
    return {};
}

Result<kvm_lapic_state> Vcpu::get_lapic() const {
    kvm_lapic_state l{};
    if (::ioctl(fd_.get(), KVM_GET_LAPIC, &l) < 0) return fail_errno("KVM_GET_LAPIC");
    return l;
}
Result<void> Vcpu::set_lapic(const kvm_lapic_state& l) const {
    if (::ioctl(fd_.get(), KVM_SET_LAPIC, &l) < 0) return fail_errno("KVM_SET_LAPIC");
    return {};
}

Result<uint64_t> Vcpu::translate(uint64_t gva) const {
    kvm_translation t{};
    t.linear_address = gva;
    if (::ioctl(fd_.get(), KVM_TRANSLATE, &t) < 0) return fail_errno("KVM_TRANSLATE");
    if (!t.valid) return fail("address {:#x} is not mapped", gva);
    return t.physical_address;
}

uint32_t Vcpu::tsc_khz() const {
    int r = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
    return r > 0 ? static_cast<uint32_t>(r) : 0;
}

} // namespace kiln
