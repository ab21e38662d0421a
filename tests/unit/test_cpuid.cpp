#include <doctest/doctest.h>

#include <cstring>

#include "vmm/machine/cpuid.hpp"

using namespace kiln;

namespace {
CpuidEntries synthetic() {
    CpuidEntries c;
    kvm_cpuid_entry2 e{};
    e.function = 0; e.eax = 0xb;
    c.entries.push_back(e);
    e = {}; e.function = 1; e.ebx = 0x00000800; e.edx = 0;
    c.entries.push_back(e);
    for (uint32_t i = 0; i < 3; ++i) {
        e = {}; e.function = 0xb; e.index = i; e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        c.entries.push_back(e);
    }
    e = {}; e.function = 4; e.index = 0; e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    e.eax = 0x121 | (3u << 5); // unified L3
    c.entries.push_back(e);
    e = {}; e.function = kCpuidKvmSignature; e.eax = kCpuidKvmFeatures;
    c.entries.push_back(e);
    e = {}; e.function = kCpuidKvmFeatures; e.eax = 0x1234;
    c.entries.push_back(e);
    return c;
}
} // namespace

TEST_CASE("cpuid: APIC ID, count and topology per vCPU") {
    auto c = fix_cpuid(synthetic(), {3, 4, 2000000});
    const auto* l1 = c.find(1);
    REQUIRE(l1);
    CHECK((l1->ebx >> 24) == 3);
    CHECK(((l1->ebx >> 16) & 0xff) == 4);
    CHECK((l1->ecx & (1u << 31)) != 0); // hypervisor bit
    CHECK((l1->edx & (1u << 28)) != 0); // HTT with more than one vCPU
    const auto* smt = c.find(0xb, 0);
    const auto* core = c.find(0xb, 1);
    const auto* end = c.find(0xb, 2);
    REQUIRE((smt && core && end));
    CHECK(smt->edx == 3);
    CHECK(smt->ebx == 1);
    CHECK(core->ebx == 4);
    CHECK(core->eax == 2);            // 4 vCPUs need 2 bits of APIC ID
    CHECK(((core->ecx >> 8) & 0xff) == 2);
    CHECK(((end->ecx >> 8) & 0xff) == 0);
    const auto* l4 = c.find(4, 0);
    CHECK((l4->eax >> 26) == 3);
}

TEST_CASE("cpuid: KVM signature leaf and the TSC frequency leaf") {
    auto c = fix_cpuid(synthetic(), {0, 1, 2500000});
    const auto* sig = c.find(kCpuidKvmSignature);
    REQUIRE(sig);
    char name[13] = {};
    std::memcpy(name, &sig->ebx, 4);
    std::memcpy(name + 4, &sig->ecx, 4);
    std::memcpy(name + 8, &sig->edx, 4);
    CHECK(std::string(name) == "KVMKVMKVM");
    CHECK(sig->eax == kCpuidTimingInfo);
    CHECK(c.find(kCpuidKvmFeatures)->eax == 0x1234); // kvmclock bits kept
    const auto* t = c.find(kCpuidTimingInfo);
    REQUIRE(t);
    CHECK(t->eax == 2500000);
    CHECK(t->ebx == kKvmApicBusKhz);
    const auto* l1 = c.find(1);
    CHECK((l1->edx & (1u << 28)) == 0);
    CHECK((l1->ebx >> 24) == 0);
}
