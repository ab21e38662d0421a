/* job=memwalk mib=N seconds=S: a TLB-bound memory walk, for comparing how the
 * host backs guest RAM (4 KiB pages, THP, hugetlb). Every 4 KiB page of N MiB
 * (default 256) of free RAM above the image holds one link; the links form one
 * random cycle through all pages (Sattolo's algorithm, fixed seed), so every
 * step is a dependent load from another page: a TLB miss unless the host maps
 * the guest's 2 MiB pages with 2 MiB pages too. Walks S seconds (default 5),
 * prints "memwalk: steps=N seconds=S.mmm rate=R per_second ns_per_step=X.x".
 * Exit 2 if no free span of N MiB exists. */
#include "jobs/jobs.h"
#include "kernel/bootinfo.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "lib/rand.h"
#include "user/user.h"

#define MEMWALK_PAGE 4096ULL
#define MEMWALK_BATCH 4096

/* The largest free, mapped span of RAM above the image. */
static void largest_span(uint64_t *start, uint64_t *end)
{
    *start = *end = 0;
    for (uint32_t i = 0; i < boot.memmap_entries; i++) {
        const struct mem_region *r = &boot.memmap[i];
        if (r->type != MEM_RAM)
            continue;
        uint64_t s = ALIGN_UP(r->addr > boot.image_end ? r->addr : boot.image_end, MEMWALK_PAGE);
        uint64_t e = ALIGN_DOWN(r->addr + r->size, MEMWALK_PAGE);
        if (e > boot.map_limit)
            e = boot.map_limit;
        if (e > s && e - s > *end - *start && platform_is_mapped(s, e - s)) {
            *start = s;
            *end = e;
        }
    }
}

int job_memwalk(void)
{
    uint64_t mib, seconds;
    if (!arg_u64("mib", 256, 1, 1024ULL * 1024, &mib) || !arg_u64("seconds", 5, 1, 86400, &seconds))
        return EXIT_USAGE;
    uint64_t start, end;
    largest_span(&start, &end);
    if (end - start < (mib << 20)) {
        kprintf("memwalk: no free span of %lu MiB (the largest is %lu MiB)\n", mib, (end - start) >> 20);
        return EXIT_USAGE;
    }
    uint64_t pages = (mib << 20) / MEMWALK_PAGE;
    /* The link of page i sits at a page-dependent cache line, so the walk does not
     * hammer one cache set. */
#define LINK(i) ((volatile uint64_t *)(start + (i) * MEMWALK_PAGE + ((i) * 64 % MEMWALK_PAGE)))
    for (uint64_t i = 0; i < pages; i++)
        *LINK(i) = i;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = pages - 1; i > 0; i--) {   /* Sattolo: one cycle through all */
        uint64_t j = xorshift64(&rng) % i;
        uint64_t t = *LINK(i);
        *LINK(i) = *LINK(j);
        *LINK(j) = t;
    }

    uint64_t at = 0, steps = 0, t0 = rdtsc(), now;
    uint64_t deadline = t0 + tsc_from_ms(seconds * 1000);
    do {
        for (int k = 0; k < MEMWALK_BATCH; k++)
            at = *LINK(at);
        steps += MEMWALK_BATCH;
        now = rdtsc();
    } while (now < deadline);
    uint64_t us = us_from_tsc(now - t0);
    uint64_t ps_per_step = us * 1000000 / steps;
    kprintf("memwalk: steps=%lu seconds=%lu.%03lu rate=%lu per_second ns_per_step=%lu.%lu end=%lu\n", steps,
            us / 1000000, us / 1000 % 1000, steps * 1000000 / us, ps_per_step / 1000, ps_per_step / 100 % 10, at);
    return EXIT_OK;
}
