/* CPUID as the VMM configured it. Read in ring 0 on purpose: there CPUID is
 * emulated by KVM from the VMM's table, while a native CPUID in ring 3 on
 * kvm_pvm may report the host's. Each emulated CPUID costs, so only the
 * leaves setup needs are read here; jobs use SYS_CPUID for more. */
#include "kernel/bootinfo.h"
#include "kernel/kernel.h"
#include "lib/arch.h"

void cpuinfo_init(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    if (!(r[2] & (1u << 31)))
        return;                             /* no hypervisor bit */
    cpuid(0x40000000, 0, r);
    if (r[0] >= 0x40000000 && r[0] < 0x40010000) {
        boot.hv_max_leaf = r[0];
        uint32_t sig[3] = { r[1], r[2], r[3] };
        const char *s = (const char *)sig;
        for (int i = 0; i < 12; i++)
            boot.hv_signature[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : 0;
        boot.hv_signature[12] = 0;
    }
}
