/* job=memfill mib=N seconds=S hold=H: fill N MiB of free RAM above the guest
 * image with one fixed 64-bit pattern (the same in every VM, so KSM can merge
 * the pages), print "memfill: filled N MiB", then spin S seconds (default 0),
 * then sleep H seconds halted (default 0: the VM holds its memory without
 * using a host CPU, as an idle worker VM does). Both waits watch the power
 * button (user/power.c).
 * Exit 2 if N MiB of mapped RAM above the image do not exist. */
#include "jobs/jobs.h"
#include "lib/console.h"
#include "user/sys.h"
#include "user/user.h"

#define MEMFILL_PATTERN 0x4b494c4e2d4b534dULL   /* "MSK-NLIK" little-endian */
#define MEMFILL_MAX_MIB (1024ULL * 1024)

struct span {
    uint64_t start, end;
};

/* Free RAM region i, clipped to above the image; empty when there is none. */
static struct span free_span(uint32_t i)
{
    const struct mem_region *r = &boot.memmap[i];
    struct span s = { 0, 0 };
    if (r->type != MEM_RAM)
        return s;
    s.start = r->addr > boot.image_end ? r->addr : boot.image_end;
    s.start = ALIGN_UP(s.start, 4096);
    s.end = ALIGN_DOWN(r->addr + r->size, 4096);
    if (s.end > boot.map_limit)
        s.end = boot.map_limit;
    if (s.end <= s.start || !platform_is_mapped(s.start, s.end - s.start))
        s.start = s.end = 0;
    return s;
}

int job_memfill(void)
{
    uint64_t mib, seconds, hold;
    if (!arg_u64("mib", 0, 1, MEMFILL_MAX_MIB, &mib) || !arg_u64("seconds", 0, 0, 86400, &seconds) ||
        !arg_u64("hold", 0, 0, 86400, &hold))
        return EXIT_USAGE;
    if (mib == 0) {
        kprintf("memfill: mib=N (MiB to fill) is required\n");
        return EXIT_USAGE;
    }

    uint64_t want = mib << 20, have = 0;
    for (uint32_t i = 0; i < boot.memmap_entries; i++) {
        struct span s = free_span(i);
        have += s.end - s.start;
    }
    if (have < want) {
        kprintf("memfill: cannot fill %lu MiB, only %lu MiB free above the image\n", mib, have >> 20);
        return EXIT_USAGE;
    }

    uint64_t left = want;
    for (uint32_t i = 0; i < boot.memmap_entries && left; i++) {
        struct span s = free_span(i);
        uint64_t n = s.end - s.start < left ? s.end - s.start : left;
        volatile uint64_t *p = (volatile uint64_t *)s.start;
        for (uint64_t k = 0; k < n / 8; k++)
            p[k] = MEMFILL_PATTERN;
        left -= n;
    }
    kprintf("memfill: filled %lu MiB\n", mib);
    spin_ms(seconds * 1000);
    sleep_ms(hold * 1000);
    return EXIT_OK;
}
