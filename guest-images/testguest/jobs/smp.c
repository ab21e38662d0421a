/* job=smp: start every AP (INIT-SIPI-SIPI, trampoline in boot/ap_trampoline.S);
 * each AP increments ap_checkin_count once and parks. Waits until all
 * expected CPUs checked in or 3 s passed; exits with the number that did
 * (BSP included). */
#include "jobs/jobs.h"
#include "kernel/kernel.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "user/sys.h"
#include "user/user.h"

#define SMP_TIMEOUT_MS 3000

int job_smp(void)
{
    const char *source;
    unsigned expected = platform_cpu_count(&source);
    kprintf("smp: expecting %u cpus (%s)\n", expected, source);
    ap_checkin_count = 0;
    uint64_t t0 = rdtsc();
    if (expected > 1)
        sys_start_aps();
    uint64_t deadline = t0 + tsc_from_ms(SMP_TIMEOUT_MS);
    while (1 + ap_checkin_count < expected && rdtsc() < deadline)
        cpu_relax();
    uint64_t us = us_from_tsc(rdtsc() - t0);
    unsigned n = 1 + ap_checkin_count;
    kprintf("smp: %u of %u cpus checked in\n", n, expected);
    kprintf("smp: took %lu us\n", us);
    return (int)(n > 255 ? 255 : n);
}
