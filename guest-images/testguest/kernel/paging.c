/* The guest's own identity map: every memory-map entry (RAM and reserved,
 * rounded out to 2 MiB) plus the 3..4 GiB MMIO window, 2 MiB pages, all with
 * the USER bit so ring-3 jobs can touch everything. The first 512 GiB are
 * mappable (one PDPT).
 *
 * This runs emulated on kvm_pvm (about 1 us per instruction), so as little as
 * possible is computed here: the PML4, the PDPT and the PD for the first GiB
 * are zero-initialized data stored in the image, the 3..4 GiB PD (uncached)
 * is assembled into the image (mmio_pd, entry.S), and the loop below costs one
 * store per 2 MiB of memory. Further PDs come from the pool in entry.S and are
 * cleared when taken. */
#include "kernel/bootinfo.h"
#include "kernel/kernel.h"
#include "lib/arch.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_US 0x4ULL
#define PTE_PS 0x80ULL
#define PTE_TABLE (PTE_P | PTE_RW | PTE_US)
#define PTE_LARGE (PTE_P | PTE_RW | PTE_US | PTE_PS)
#define PTE_UC 0x18ULL                       /* PWT | PCD: device memory */
#define MAP_LIMIT GiB(512)

extern uint64_t mmio_pd[512];
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd0[512] __attribute__((aligned(4096)));
static unsigned pool_used;

static uint64_t *alloc_table(void)
{
    if (pool_used >= PT_POOL_PAGES)
        return 0;
    uint64_t *t = pt_pool[pool_used++], *p = t;
    size_t n = 512;
    __asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(0) : "memory");
    return t;
}

/* Maps [start, end) rounded out to 2 MiB. Returns false if the pool ran dry. */
static bool map_range(uint64_t start, uint64_t end)
{
    if (end > MAP_LIMIT)
        end = MAP_LIMIT;
    uint64_t pa = ALIGN_DOWN(start, MiB(2));
    while (pa < end) {
        unsigned gib = (unsigned)(pa >> 30);
        uint64_t gib_end = ((uint64_t)gib + 1) << 30;
        if (gib == 3) {                     /* the MMIO window: mapped already */
            pa = gib_end;
            continue;
        }
        uint64_t *pd;
        if (pdpt[gib]) {
            pd = (uint64_t *)(pdpt[gib] & ~0xfffULL);
        } else {
            if (!(pd = alloc_table())) {
                if (pa < boot.map_limit)
                    boot.map_limit = pa;    /* from here up nothing is mapped */
                return false;
            }
            pdpt[gib] = (uint64_t)pd | PTE_TABLE;
        }
        uint64_t stop = end < gib_end ? end : gib_end;
        uint64_t entry = pa | PTE_LARGE;
        for (uint64_t *e = pd + ((pa >> 21) & 511); pa < stop; pa += MiB(2), entry += MiB(2))
            *e++ = entry;
    }
    return true;
}

/* SYS_MAP_MMIO: a device window below 4 GiB that the boot map left out (a VMM
 * may put virtio-mmio devices anywhere in the 32-bit hole, not only in 3..4 GiB).
 * Maps the 2 MiB pages it touches, uncached and USER (the drivers run in ring 3);
 * pages that are mapped already (RAM, the 3..4 GiB window) stay as they are.
 * Returns 0, or (uint64_t)-1 for a window reaching above 4 GiB or when the
 * page-table pool is empty. */
uint64_t paging_map_mmio(uint64_t base, uint64_t size)
{
    uint64_t end = base + size;
    if (size == 0 || end < base || end > GiB(4))
        return (uint64_t)-1;
    for (uint64_t pa = ALIGN_DOWN(base, MiB(2)); pa < end; pa += MiB(2)) {
        unsigned gib = (unsigned)(pa >> 30);
        uint64_t *pd;
        if (pdpt[gib]) {
            pd = (uint64_t *)(pdpt[gib] & ~0xfffULL);
        } else {
            if (!(pd = alloc_table()))
                return (uint64_t)-1;
            pdpt[gib] = (uint64_t)pd | PTE_TABLE;
        }
        uint64_t *e = &pd[(pa >> 21) & 511];
        if (!*e)
            *e = pa | PTE_LARGE | PTE_UC;
    }
    /* Only not-present entries changed, which the TLB does not hold; reload anyway,
     * it is one instruction. */
    write_cr3((uint64_t)pml4);
    return 0;
}

void paging_init(void)
{
    boot.map_limit = MAP_LIMIT;
    pml4[0] = (uint64_t)pdpt | PTE_TABLE;
    pdpt[0] = (uint64_t)pd0 | PTE_TABLE;
    pdpt[3] = (uint64_t)mmio_pd | PTE_TABLE;
    map_range(0, boot.image_end);           /* in case a loader's map left it out */
    for (uint32_t i = 0; i < boot.memmap_entries; i++) {
        const struct mem_region *r = &boot.memmap[i];
        if (!map_range(r->addr, r->addr + r->size))
            break;
    }
    /* Everything is USER: SMEP/SMAP would fault on it. PAE stays on. */
    write_cr4((read_cr4() & ~((1ULL << 20) | (1ULL << 21))) | 0x20);
    write_cr3((uint64_t)pml4);
}
