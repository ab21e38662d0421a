// The KVM ioctls whose argument ends in a flexible array.
//
// In C++ the uapi headers' __DECLARE_FLEX_ARRAY wraps the array in a struct with an empty
// member, which makes sizeof(kvm_cpuid2) 12 instead of 8 and moves the array. The size
// is encoded in the ioctl number, so the kernel rejects KVM_GET_SUPPORTED_CPUID with
// EINVAL. Kiln declares these headers and numbers itself, with the C layout: an 8-byte
// header followed by the entries.
#pragma once

#include <cstdint>

#include <linux/kvm.h>

namespace kiln::kvm_abi {

struct CpuidHeader {
    uint32_t nent;
    uint32_t padding;
};
struct MsrsHeader {
    uint32_t nmsrs;
    uint32_t pad;
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);

// The values the C headers give, checked so a header change cannot go unnoticed.
static_assert(kGetSupportedCpuid == 0xc008ae05ul);
static_assert(kSetCpuid2 == 0x4008ae90ul);
static_assert(kSetMsrs == 0x4008ae89ul);
static_assert(kGetMsrs == 0xc008ae88ul);

} // namespace kiln::kvm_abi
