/* testguest-compute-host [seconds | seconds=N]: the guest's compute job on
 * the host, same kernel object, same output format, so a benchmark can
 * divide the guest rate by this one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/compute_kernel.h"

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    unsigned long seconds = 5;
    if (argc > 2) {
        fprintf(stderr, "usage: %s [seconds | seconds=N]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        const char *arg = argv[1];
        if (strncmp(arg, "seconds=", 8) == 0)
            arg += 8;
        char *end;
        seconds = strtoul(arg, &end, 10);
        if (*arg == 0 || *end != 0 || seconds < 1 || seconds > 86400) {
            fprintf(stderr, "%s: bad value for seconds: '%s' (expected 1..86400)\n", argv[0], argv[1]);
            return 2;
        }
    }

    static struct compute_state state;
    compute_init(&state, COMPUTE_SEED);
    uint64_t iterations = 0, t0 = now_us(), now;
    uint64_t deadline = t0 + seconds * 1000000;
    do {
        for (int i = 0; i < COMPUTE_BATCH; i++)
            compute_iteration(&state);
        iterations += COMPUTE_BATCH;
        now = now_us();
    } while (now < deadline);

    uint64_t us = now - t0;
    printf(COMPUTE_RESULT_FORMAT, (unsigned long)iterations, (unsigned long)(us / 1000000),
           (unsigned long)(us / 1000 % 1000), (unsigned long)compute_rate(iterations, us));
    printf(COMPUTE_CHECKSUM_FORMAT, (unsigned long)compute_checksum(&state));
    return 0;
}
