#include "vmm/machine/cpuid.hpp"

#include <bit>
#include <cstring>

namespace kiln {

namespace {

// Bits needed to hold values 0..n-1 (the x2APIC ID shift for a level of n units).
uint32_t bits_for(uint32_t n) { return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1)); }

constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;

} // namespace

CpuidEntries fix_cpuid(const CpuidEntries& supported, const CpuidFixes& f) {
    CpuidEntries c = supported;
    const uint32_t apic_id = f.vcpu_id;
    // One socket holding every vCPU as a core with one thread: the simplest topology a
    // guest can reason about; NUMA placement is the host's business.
    const uint32_t core_shift = bits_for(f.num_vcpus);

    for (auto& e : c.entries) {
        switch (e.function) {
        case 1:
            e.ebx = (e.ebx & 0x0000ffffu) | (apic_id << 24) | (((1u << core_shift) & 0xff) << 16);
            e.ecx |= kLeaf1EcxHypervisor;
            if (f.num_vcpus > 1)
                e.edx |= kLeaf1EdxHtt;
            else
                e.edx &= ~kLeaf1EdxHtt;
            break;
        case 4:
            // EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing this cache - 1.
            if ((e.eax & 0x1f) != 0) {
                uint32_t cache_level = (e.eax >> 5) & 0x7;
                uint32_t sharing = cache_level >= 3 ? f.num_vcpus - 1 : 0;
                e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((f.num_vcpus - 1) & 0x3f) << 26);
            }
            break;
        case 0xb:
        case 0x1f:
            // Extended topology: level 0 = SMT (1 thread), level 1 = core (all vCPUs).
            e.edx = apic_id;
            if (e.index == 0) {
                e.eax = 0;
                e.ebx = 1;
                e.ecx = (1u << 8) | 0;
            } else if (e.index == 1) {
                e.eax = core_shift;
                e.ebx = f.num_vcpus;
                e.ecx = (2u << 8) | 1;
            } else {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = e.index;
            }
            break;
        case 0x80000008:
            // ECX[7:0]: number of cores - 1 (AMD); ECX[15:12]: APIC ID size.
            e.ecx = (e.ecx & ~0xf0ffu) | ((f.num_vcpus - 1) & 0xff) | (core_shift << 12);
            break;
        default: break;
        }
    }

    // KVM's signature leaf advertises kvmclock and friends through 0x40000001; raise its
    // maximum so the timing leaf is visible.
    kvm_cpuid_entry2 sig{};
    if (const auto* s = c.find(kCpuidKvmSignature)) sig = *s;
    sig.function = kCpuidKvmSignature;
    sig.index = 0;
    sig.flags = 0;
    const char kSignature[12] = {'K', 'V', 'M', 'K', 'V', 'M', 'K', 'V', 'M', 0, 0, 0};
    std::memcpy(&sig.ebx, kSignature, 4);
    std::memcpy(&sig.ecx, kSignature + 4, 4);
    std::memcpy(&sig.edx, kSignature + 8, 4);
    sig.eax = f.tsc_khz ? kCpuidTimingInfo : kCpuidKvmFeatures;
    c.set(sig);
    if (!c.find(kCpuidKvmFeatures)) {
        kvm_cpuid_entry2 feat{};
        feat.function = kCpuidKvmFeatures;
        c.set(feat);
    }
    if (f.tsc_khz) {
        kvm_cpuid_entry2 t{};
        t.function = kCpuidTimingInfo;
        t.eax = f.tsc_khz;
        t.ebx = kKvmApicBusKhz;
        c.set(t);
    }
    return c;
}

} // namespace kiln
