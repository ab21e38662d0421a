#include "vmm/machine/vcpu_setup.hpp"

#include <array>
#include <cstring>

namespace kiln {

namespace {

// MSR numbers (Intel SDM vol. 4).
constexpr uint32_t kMsrSysenterCs = 0x174, kMsrSysenterEsp = 0x175, kMsrSysenterEip = 0x176,
                   kMsrStar = 0xc0000081, kMsrLstar = 0xc0000082, kMsrCstar = 0xc0000083,
                   kMsrSyscallMask = 0xc0000084, kMsrKernelGsBase = 0xc0000102,
                   kMsrTsc = 0x10, kMsrMiscEnable = 0x1a0, kMsrMtrrDefType = 0x2ff;
constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1u << 11, kMtrrTypeWriteBack = 6;

// Local APIC register offsets and LVT delivery modes.
constexpr size_t kApicLvtLint0 = 0x350, kApicLvtLint1 = 0x360;
constexpr uint32_t kApicModeExtInt = 0x7, kApicModeNmi = 0x4;

uint32_t get_apic_reg(const kvm_lapic_state& l, size_t off) {
    uint32_t v;
    std::memcpy(&v, l.regs + off, 4);
    return v;
}
void set_apic_reg(kvm_lapic_state& l, size_t off, uint32_t v) { std::memcpy(l.regs + off, &v, 4); }
uint32_t set_delivery_mode(uint32_t reg, uint32_t mode) { return (reg & ~0x700u) | (mode << 8); }

kvm_segment to_kvm(const firmware::Segment& s) {
    kvm_segment k{};
    k.base = s.base;
    k.limit = s.limit;
    k.selector = s.selector;
    k.type = s.type;
    k.present = s.present;
    k.dpl = s.dpl;
    k.db = s.db;
    k.s = s.s;
    k.l = s.l;
    k.g = s.g;
    k.avl = s.avl;
    k.unusable = s.present ? 0 : 1;
    return k;
}

} // namespace

Result<void> setup_vcpu_common(const Vcpu& vcpu, const CpuidEntries& cpuid) {
    KILN_TRY_CTX(vcpu.set_cpuid(cpuid), "vcpu{}", vcpu.id());

    const std::array<kvm_msr_entry, 11> msrs = {{
        {kMsrSysenterCs, 0, 0}, {kMsrSysenterEsp, 0, 0}, {kMsrSysenterEip, 0, 0},
        {kMsrStar, 0, 0}, {kMsrCstar, 0, 0}, {kMsrKernelGsBase, 0, 0},
        {kMsrSyscallMask, 0, 0}, {kMsrLstar, 0, 0}, {kMsrTsc, 0, 0},
        {kMsrMiscEnable, 0, kMiscEnableFastString},
        // Without MTRRs enabled, Linux maps all memory uncached.
        {kMsrMtrrDefType, 0, kMtrrEnable | kMtrrTypeWriteBack},
    }};
    KILN_TRY_CTX(vcpu.set_msrs(msrs), "vcpu{}: boot MSRs", vcpu.id());

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;     // x87 default control word
    fpu.mxcsr = 0x1f80;  // SSE default: all exceptions masked
    KILN_TRY_CTX(vcpu.set_fpu(fpu), "vcpu{}", vcpu.id());

    // LINT0 takes the 8259 PIC's output (ExtINT), LINT1 the NMI: the wiring of a PC,
    // which Linux assumes when it starts in virtual-wire mode.
    auto lapic = KILN_TRY_CTX(vcpu.get_lapic(), "vcpu{}", vcpu.id());
    set_apic_reg(lapic, kApicLvtLint0, set_delivery_mode(get_apic_reg(lapic, kApicLvtLint0), kApicModeExtInt));
    set_apic_reg(lapic, kApicLvtLint1, set_delivery_mode(get_apic_reg(lapic, kApicLvtLint1), kApicModeNmi));
    KILN_TRY_CTX(vcpu.set_lapic(lapic), "vcpu{}", vcpu.id());
    return {};
}

Result<void> setup_boot_vcpu(const Vcpu& vcpu, const firmware::BootCpuState& st) {
    auto sregs = KILN_TRY(vcpu.get_sregs());
    sregs.cs = to_kvm(st.cs);
    sregs.ds = to_kvm(st.ds);
    sregs.es = to_kvm(st.es);
    sregs.fs = to_kvm(st.fs);
    sregs.gs = to_kvm(st.gs);
    sregs.ss = to_kvm(st.ss);
    sregs.tr = to_kvm(st.tr);
    sregs.ldt = to_kvm(st.ldt);
    sregs.gdt.base = st.gdt.base;
    sregs.gdt.limit = st.gdt.limit;
    sregs.idt.base = st.idt.base;
    sregs.idt.limit = st.idt.limit;
    sregs.cr0 = st.cr0;
    sregs.cr3 = st.cr3;
    sregs.cr4 = st.cr4;
    sregs.efer = st.efer;
    KILN_TRY_CTX(vcpu.set_sregs(sregs), "boot vcpu");

    kvm_regs regs{};
    regs.rip = st.rip;
    regs.rsp = st.rsp;
    regs.rbp = st.rbp;
    regs.rsi = st.rsi;
    regs.rbx = st.rbx;
    regs.rflags = st.rflags;
    KILN_TRY_CTX(vcpu.set_regs(regs), "boot vcpu");
    return {};
}

} // namespace kiln
