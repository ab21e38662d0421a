/* job=compute seconds=N: the shared integer kernel (compute/compute_kernel.c,
 * also run by the host program testguest-compute-host) in ring 3 for N
 * seconds (default 5); prints iterations, measured seconds and the rate. */
#include "compute/compute_kernel.h"
#include "jobs/jobs.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "user/user.h"

static struct compute_state state;

int job_compute(void)
{
    uint64_t seconds;
    if (!arg_u64("seconds", 5, 1, 86400, &seconds))
        return EXIT_USAGE;

    compute_init(&state, COMPUTE_SEED);
    uint64_t iterations = 0, t0 = rdtsc(), now;
    uint64_t deadline = t0 + tsc_from_ms(seconds * 1000);
    do {
        for (int i = 0; i < COMPUTE_BATCH; i++)
            compute_iteration(&state);
        iterations += COMPUTE_BATCH;
        now = rdtsc();
    } while (now < deadline);

    uint64_t us = us_from_tsc(now - t0);
    kprintf(COMPUTE_RESULT_FORMAT, iterations, us / 1000000, us / 1000 % 1000,
            compute_rate(iterations, us));
    kprintf(COMPUTE_CHECKSUM_FORMAT, compute_checksum(&state));
    return EXIT_OK;
}
