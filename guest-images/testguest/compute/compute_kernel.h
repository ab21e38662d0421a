/* The CPU-bound integer kernel, shared by the guest's job=compute and the
 * host program testguest-compute-host: the very same object file is linked
 * into both, so guest rate / host rate compares like with like.
 *
 * One iteration = 256 steps over an 8 KiB table: xorshift, table lookups and
 * updates, data-dependent branches, multiplies, a division, rotates (the
 * role HEP-SPEC/HINT play: integer work, small working set, branches). */
#pragma once
#include <stdint.h>

#define COMPUTE_TABLE 2048
#define COMPUTE_STEPS 256
#define COMPUTE_BATCH 64            /* iterations between clock checks */
#define COMPUTE_SEED 0x4b696c6e2d746775ULL

/* One format for both programs: iterations, seconds (ms precision), rate. */
#define COMPUTE_RESULT_FORMAT "compute: iterations=%lu seconds=%lu.%03lu rate=%lu per_second\n"
#define COMPUTE_CHECKSUM_FORMAT "compute: checksum=0x%016lx\n"

struct compute_state {
    uint32_t table[COMPUTE_TABLE];
    uint64_t x;
    uint64_t acc;
};

void compute_init(struct compute_state *s, uint64_t seed);
void compute_iteration(struct compute_state *s);
uint64_t compute_checksum(const struct compute_state *s);

/* iterations per second from a count and elapsed microseconds. */
static inline uint64_t compute_rate(uint64_t iterations, uint64_t us)
{
    return us ? iterations * 1000000 / us : 0;
}
