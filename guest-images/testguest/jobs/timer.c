/* job=timer ms=N hz=H tolerance=P: run the LAPIC timer periodically at H Hz
 * (default 100) on vector 32 while ring 3 spins N ms (default 1000) by the
 * TSC; count the ticks the ring-0 handler saw.
 * Pass (exit 0) when |ticks - expected| <= expected * P / 100 + 2, P default
 * 20, else exit 1.
 *
 * Why 100 Hz and 20 %: on kvm_pvm every tick is an exception into emulated
 * ring 0; measured with QEMU there, 100 Hz and 250 Hz deliver 98-100 % of the
 * ticks, 500 Hz about 83 %, 1000 Hz about 75 %, and the rate saturates near
 * 3,400 ticks/s. KVM also drops (coalesces) periodic ticks while the vCPU
 * thread is descheduled, so a heavily loaded host loses a few percent. */
#include "jobs/jobs.h"
#include "kernel/kernel.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "user/sys.h"
#include "user/user.h"

#define TIMER_DEFAULT_HZ 100
#define TIMER_DEFAULT_TOLERANCE_PCT 20
#define TIMER_TOLERANCE_TICKS 2

int job_timer(void)
{
    uint64_t ms, hz, tolerance;
    if (!arg_u64("ms", 1000, 1, 3600000, &ms) || !arg_u64("hz", TIMER_DEFAULT_HZ, 1, 100000, &hz) ||
        !arg_u64("tolerance", TIMER_DEFAULT_TOLERANCE_PCT, 0, 100, &tolerance))
        return EXIT_USAGE;

    uint64_t start_ticks = timer_ticks;
    sys_timer(hz);
    spin_ms(ms);
    sys_timer(0);
    uint64_t ticks = timer_ticks - start_ticks;

    uint64_t expected = ms * hz / 1000;
    uint64_t slack = expected * tolerance / 100 + TIMER_TOLERANCE_TICKS;
    uint64_t diff = ticks > expected ? ticks - expected : expected - ticks;
    kprintf("timer: ticks=%lu ms=%lu hz=%lu expected=%lu\n", ticks, ms, hz, expected);
    return diff <= slack ? EXIT_OK : EXIT_FAIL;
}
