/* See compute_kernel.h. Compiled once, with the guest's code-generation
 * flags (-O2 -mgeneral-regs-only -ffreestanding ...), and linked into both
 * the guest image and the host program. No calls out of this file. */
#include "compute/compute_kernel.h"

void compute_init(struct compute_state *s, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (int i = 0; i < COMPUTE_TABLE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s->table[i] = (uint32_t)(x >> 16);
    }
    s->x = x;
    s->acc = seed;
}

void compute_iteration(struct compute_state *s)
{
    uint64_t x = s->x, acc = s->acc;
    uint32_t *t = s->table;
    for (int i = 0; i < COMPUTE_STEPS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t idx = (uint32_t)(x >> 11) & (COMPUTE_TABLE - 1);
        uint32_t v = t[idx];
        if (v & 1)
            v = 3 * v + 1;
        else
            v >>= 1;
        switch ((x >> 40) & 3) {
        case 0:
            acc += (uint64_t)v * (uint32_t)(x >> 20);
            break;
        case 1:
            acc = ((acc << 7) | (acc >> 57)) + v;
            break;
        case 2:
            acc -= v / ((uint32_t)(x & 0xff) + 1);
            break;
        default:
            if (v > t[(idx + 1) & (COMPUTE_TABLE - 1)])
                acc ^= (uint64_t)v << 17;
            else
                acc += idx;
            break;
        }
        t[idx] = v ^ (uint32_t)acc;
    }
    s->x = x;
    s->acc = acc;
}

uint64_t compute_checksum(const struct compute_state *s)
{
    uint64_t h = s->acc ^ s->x;
    for (int i = 0; i < COMPUTE_TABLE; i++)
        h = (h ^ s->table[i]) * 0x100000001b3ULL;
    return h;
}
