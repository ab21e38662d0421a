/* job=info: everything ring-0 setup learned, for debugging a VMM's boot
 * structures. Several "info: key=value..." lines, exit 0. */
#include "boot/layout.h"
#include "jobs/jobs.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "user/sys.h"
#include "user/user.h"

int job_info(void)
{
    static const char *const kinds[] = { "?", "pvh", "bzimage32", "bzimage64" };
    const char *cpu_source;
    unsigned cpus = platform_cpu_count(&cpu_source);
    kprintf("info: boot=%s cmdline='%s'\n", kinds[boot.kind <= BOOT_BZIMAGE64 ? boot.kind : 0], boot.cmdline);
    kprintf("info: image=0x%lx-0x%lx rsdp=0x%lx map_limit=0x%lx\n", boot.image_start, boot.image_end, boot.rsdp,
            boot.map_limit);
    for (uint32_t i = 0; i < boot.memmap_entries; i++)
        kprintf("info: mem 0x%016lx-0x%016lx type=%u\n", boot.memmap[i].addr,
                boot.memmap[i].addr + boot.memmap[i].size, boot.memmap[i].type);
    kprintf("info: ram=%lu MiB%s\n", platform_ram_bytes() >> 20, boot.memmap_fallback ? " (assumed)" : "");
    kprintf("info: cpus=%u (%s) cpuid_cpus=%u\n", cpus, cpu_source, platform_cpuid_cpus());
    kprintf("info: hypervisor='%s' max_leaf=0x%x\n", boot.hv_signature, boot.hv_max_leaf);
    kprintf("info: tsc_khz=%lu (%s) lapic_bus_khz=%lu lapic=0x%lx\n", boot.tsc_khz, boot.tsc_source,
            boot.lapic_bus_khz, boot.lapic_base);

    /* What a ring-3 -> ring-0 round trip costs on this host. */
    enum { N = 200 };
    uint32_t r[4];
    uint64_t t0 = rdtsc();
    for (int i = 0; i < N; i++)
        sys_cpuid(0, 0, r);
    uint64_t t1 = rdtsc();
    for (int i = 0; i < N; i++)
        (void)inb(0x3f8 + 5);
    uint64_t t2 = rdtsc();
    kprintf("info: round trip ns: syscall=%lu port_in=%lu\n", us_from_tsc((t1 - t0) * 1000 / N),
            us_from_tsc((t2 - t1) * 1000 / N));
    return EXIT_OK;
}
