/* xorshift64: the jobs' pseudo-random numbers (block numbers, walk orders). Fast,
 * deterministic from its seed (runs are comparable), never returns 0 for a non-zero
 * seed. Not for anything but spreading accesses. */
#pragma once
#include "lib/types.h"

static inline uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
