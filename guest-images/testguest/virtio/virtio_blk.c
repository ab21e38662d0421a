#include "virtio/virtio_blk.h"

#include "lib/arch.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/sys.h"
#include "user/user.h"

/* virtio-mmio registers (virtio 1.2, 4.2.2). */
#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_DEVICE_FEATURES 0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_STATUS 0x070
#define R_QUEUE_DESC 0x080
#define R_QUEUE_DRIVER 0x090
#define R_QUEUE_DEVICE 0x0a0
#define R_CONFIG_GENERATION 0x0fc
#define R_CONFIG 0x100

#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64
#define S_FAILED 128

#define F_BLK_RO 5
#define F_BLK_BLK_SIZE 6
#define F_BLK_FLUSH 9
#define F_BLK_MQ 12
#define F_BLK_DISCARD 13
#define F_BLK_WRITE_ZEROES 14
#define F_EVENT_IDX 29
#define F_VERSION_1 32

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

/* How long vblk_wait() spins before it first reads the device status (an MMIO
 * read is an exit to the VMM, so not on every spin), and between reads. */
#define STATUS_CHECK_MS 10
/* used_event is kept this far behind the used index: we poll, and the device
 * would only interrupt once its used index crossed it (after 49152 completions
 * we have not reaped, which cannot happen with at most 64 in flight). */
#define USED_EVENT_LAG 0x4000

#define QSIZE_MAX 256

static uint64_t dma_next, dma_end;

void *dma_alloc(uint64_t size, uint64_t align)
{
    if (!dma_next) {
        /* The largest mapped RAM range above the image. */
        for (uint32_t i = 0; i < boot.memmap_entries; i++) {
            const struct mem_region *r = &boot.memmap[i];
            if (r->type != MEM_RAM)
                continue;
            uint64_t s = ALIGN_UP(r->addr > boot.image_end ? r->addr : boot.image_end, 4096);
            uint64_t e = ALIGN_DOWN(r->addr + r->size, 4096);
            if (e > boot.map_limit)
                e = boot.map_limit;
            if (e > s && e - s > dma_end - dma_next && platform_is_mapped(s, e - s)) {
                dma_next = s;
                dma_end = e;
            }
        }
    }
    uint64_t at = ALIGN_UP(dma_next, align);
    if (!dma_next || at + size > dma_end || at + size < at)
        return 0;
    dma_next = at + size;
    memset((void *)at, 0, size);
    return (void *)at;
}

static uint32_t rd(const struct vblk *d, uint32_t reg) { return mmio_read32(d->base + reg); }
static void wr(const struct vblk *d, uint32_t reg, uint32_t v) { mmio_write32(d->base + reg, v); }
static void wr64(const struct vblk *d, uint32_t reg, uint64_t v)
{
    wr(d, reg, (uint32_t)v);
    wr(d, reg + 4, (uint32_t)(v >> 32));
}

/* "4K", "0x1000", "1M": Linux's memparse, enough of it. */
static const char *parse_num(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        base = 16, s += 2;
    const char *start = s;
    for (;; s++) {
        unsigned dgt;
        if (*s >= '0' && *s <= '9')
            dgt = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            dgt = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            dgt = (unsigned)(*s - 'A' + 10);
        else
            break;
        v = v * base + dgt;
    }
    if (s == start)
        return 0;
    if (*s == 'K' || *s == 'k')
        v <<= 10, s++;
    else if (*s == 'M' || *s == 'm')
        v <<= 20, s++;
    else if (*s == 'G' || *s == 'g')
        v <<= 30, s++;
    *out = v;
    return s;
}

/* The i-th `virtio_mmio.device=SIZE@BASE:IRQ` word's window; false if none. */
static bool vmmio_word(unsigned index, uint64_t *base, uint64_t *size)
{
    static const char key[] = "virtio_mmio.device=";
    const char *p = boot.cmdline;
    unsigned n = 0;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        if ((size_t)(p - w) <= sizeof key - 1 || strncmp(w, key, sizeof key - 1) != 0)
            continue;
        uint64_t sz, b, irq;
        const char *q = parse_num(w + sizeof key - 1, &sz);
        if (!q || *q != '@' || !(q = parse_num(q + 1, &b)) || *q != ':' || !parse_num(q + 1, &irq))
            continue; /* not a word we understand: Linux would skip it too */
        if (n++ == index) {
            *base = b;
            *size = sz;
            return true;
        }
    }
    return false;
}

unsigned vmmio_count(void)
{
    unsigned n = 0;
    uint64_t b, s;
    while (vmmio_word(n, &b, &s))
        n++;
    return n;
}

/* A virtio-mmio window the driver can use: below 4 GiB (the 32-bit hole), large
 * enough for the registers and the block config, and mapped for ring 3 (the
 * boot map covers RAM and 3..4 GiB; anything else is mapped on demand). Then
 * whether a virtio block device answers there. */
static bool vmmio_is_blk(uint64_t base, uint64_t size)
{
    if (size < 0x200 || base + size < base || base + size > GiB(4)) {
        kprintf("blk: virtio-mmio window 0x%lx+0x%lx is not in the 32-bit MMIO hole\n", base, size);
        return false;
    }
    if (!platform_is_mapped(base, size) && !sys_map_mmio(base, size)) {
        kprintf("blk: cannot map the virtio-mmio window 0x%lx+0x%lx\n", base, size);
        return false;
    }
    return mmio_read32(base + R_MAGIC) == 0x74726976 && mmio_read32(base + R_DEVICE_ID) == 2;
}

unsigned vblk_count(void)
{
    unsigned n = 0;
    uint64_t base, size;
    for (unsigned w = 0; vmmio_word(w, &base, &size); w++)
        n += vmmio_is_blk(base, size);
    return n;
}

static bool fail_init(struct vblk *d, const char *why)
{
    kprintf("blk: device at 0x%lx: %s\n", d->base, why);
    wr(d, R_STATUS, rd(d, R_STATUS) | S_FAILED);
    return false;
}

bool vblk_open(unsigned index, struct vblk *d)
{
    return vblk_open_queue(index, 0, d);
}

bool vblk_open_queue(unsigned index, uint16_t queue, struct vblk *d)
{
    memset(d, 0, sizeof *d);
    d->queue = queue;
    unsigned found = 0;
    for (unsigned w = 0;; w++) {
        uint64_t base, size;
        if (!vmmio_word(w, &base, &size)) {
            kprintf("blk: no disk %u (the command line names %u virtio-mmio devices)\n", index, vmmio_count());
            return false;
        }
        if (!vmmio_is_blk(base, size))
            continue;
        if (found++ == index) {
            d->base = base;
            break;
        }
    }
    if (rd(d, R_VERSION) != 2)
        return fail_init(d, "not a virtio-mmio version 2 (non-legacy) device");

    wr(d, R_STATUS, 0); /* reset */
    wr(d, R_STATUS, S_ACKNOWLEDGE);
    wr(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    wr(d, R_DEVICE_FEATURES_SEL, 0);
    uint64_t offered = rd(d, R_DEVICE_FEATURES);
    wr(d, R_DEVICE_FEATURES_SEL, 1);
    offered |= (uint64_t)rd(d, R_DEVICE_FEATURES) << 32;
    if (!(offered & (1ULL << F_VERSION_1)))
        return fail_init(d, "does not offer VIRTIO_F_VERSION_1");
    uint64_t want = (1ULL << F_VERSION_1) | (1ULL << F_BLK_RO) | (1ULL << F_BLK_BLK_SIZE) | (1ULL << F_BLK_FLUSH) |
                    (1ULL << F_EVENT_IDX) | (1ULL << F_BLK_MQ) | (1ULL << F_BLK_DISCARD) |
                    (1ULL << F_BLK_WRITE_ZEROES);
    d->features = offered & want;
    wr(d, R_DRIVER_FEATURES_SEL, 0);
    wr(d, R_DRIVER_FEATURES, (uint32_t)d->features);
    wr(d, R_DRIVER_FEATURES_SEL, 1);
    wr(d, R_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
    wr(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    if (!(rd(d, R_STATUS) & S_FEATURES_OK))
        return fail_init(d, "refused our features");
    d->read_only = d->features & (1ULL << F_BLK_RO);
    d->event_idx = d->features & (1ULL << F_EVENT_IDX);
    /* The 64-bit capacity takes two reads: retry if the device changed its config
     * in between (ConfigGeneration, virtio 1.2, 2.5.1). */
    uint32_t gen;
    do {
        gen = rd(d, R_CONFIG_GENERATION);
        d->capacity = (uint64_t)rd(d, R_CONFIG) | (uint64_t)rd(d, R_CONFIG + 4) << 32;
        d->blk_size = (d->features & (1ULL << F_BLK_BLK_SIZE)) ? rd(d, R_CONFIG + 20) : 512;
        /* num_queues is in the config space only when the device offers MQ (bit 12). */
        d->num_queues = (d->features & (1ULL << F_BLK_MQ)) ? (uint16_t)(rd(d, R_CONFIG + 32) >> 16) : 1;
    } while (gen != rd(d, R_CONFIG_GENERATION));

    /* One queue, the `queue`-th: a device with several queues serves each on its own,
     * so a job can exercise any of them (the others stay unused). */
    if (d->queue >= d->num_queues)
        return fail_init(d, "the device has fewer queues than asked for");
    wr(d, R_QUEUE_SEL, d->queue);
    uint32_t max = rd(d, R_QUEUE_NUM_MAX);
    if (max == 0)
        return fail_init(d, "the queue is not available");
    d->qsize = (uint16_t)(max < QSIZE_MAX ? max : QSIZE_MAX);
    d->slots = d->qsize / 3 < VBLK_MAX_INFLIGHT ? d->qsize / 3 : VBLK_MAX_INFLIGHT;
    if (d->slots == 0)
        return fail_init(d, "queue too small");
    d->desc = dma_alloc(16u * d->qsize, 4096);
    d->avail = dma_alloc(6u + 2u * d->qsize, 4096);
    d->used = dma_alloc(6u + 8u * d->qsize, 4096);
    d->hdr = dma_alloc(sizeof(struct vblk_req) * d->slots, 4096);
    d->status = dma_alloc(d->slots, 64);
    if (!d->desc || !d->avail || !d->used || !d->hdr || !d->status)
        return fail_init(d, "out of guest memory for the queue");
    /* Fixed chains: slot s uses descriptors 3s (header), 3s+1 (data), 3s+2 (status). */
    for (unsigned s = 0; s < d->slots; s++) {
        volatile struct vring_desc *h = &d->desc[3 * s];
        h[0].addr = (uint64_t)&d->hdr[s];
        h[0].len = sizeof(struct vblk_req);
        h[2].addr = (uint64_t)&d->status[s];
        h[2].len = 1;
        h[2].flags = DESC_F_WRITE;
    }
    /* We poll: ask for no interrupts. With EVENT_IDX the flags must stay 0
     * (virtio 1.2, 2.7.7.1) and used_event says it; without, the flag does. */
    if (d->event_idx)
        d->avail[2 + d->qsize] = (uint16_t)(0 - 1 - USED_EVENT_LAG);
    else
        d->avail[0] = AVAIL_F_NO_INTERRUPT;
    wr(d, R_QUEUE_NUM, d->qsize);
    wr64(d, R_QUEUE_DESC, (uint64_t)d->desc);
    wr64(d, R_QUEUE_DRIVER, (uint64_t)d->avail);
    wr64(d, R_QUEUE_DEVICE, (uint64_t)d->used);
    wr(d, R_QUEUE_READY, 1);
    wr(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    if (rd(d, R_STATUS) & (S_NEEDS_RESET | S_FAILED))
        return fail_init(d, "failed after DRIVER_OK");
    return true;
}

void vblk_submit(struct vblk *d, unsigned slot, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
    volatile struct vring_desc *h = &d->desc[3 * slot];
    d->hdr[slot].type = type;
    d->hdr[slot].reserved = 0;
    d->hdr[slot].sector = sector;
    d->status[slot] = 0xff;
    /* The fixed parts too: a chain a caller bent on purpose (blk-hostile) is whole again. */
    h[0].addr = (uint64_t)&d->hdr[slot];
    h[0].len = sizeof(struct vblk_req);
    h[2].addr = (uint64_t)&d->status[slot];
    h[2].len = 1;
    h[2].flags = DESC_F_WRITE;
    if (len) {
        h[0].flags = DESC_F_NEXT;
        h[0].next = (uint16_t)(3 * slot + 1);
        h[1].addr = (uint64_t)buf;
        h[1].len = len;
        /* The device reads the data of writes, discards and write-zeroes (their range
         * list); it writes the data of everything else. */
        const bool to_device = type == VBLK_T_OUT || type == VBLK_T_DISCARD || type == VBLK_T_WRITE_ZEROES;
        h[1].flags = (uint16_t)(DESC_F_NEXT | (to_device ? 0 : DESC_F_WRITE));
        h[1].next = (uint16_t)(3 * slot + 2);
    } else {
        h[0].flags = DESC_F_NEXT;
        h[0].next = (uint16_t)(3 * slot + 2);
    }
    d->avail[2 + d->avail_idx % d->qsize] = (uint16_t)(3 * slot);
    __asm__ volatile("" ::: "memory"); /* x86 keeps stores in order; the compiler must too */
    d->avail[1] = ++d->avail_idx;
}

void vblk_kick(struct vblk *d)
{
    /* A store-load fence: the device must see avail->idx before we read its
     * avail_event, or both sides may decide the other will act. */
    __asm__ volatile("mfence" ::: "memory");
    if (d->event_idx) {
        uint16_t event = (uint16_t)(d->used[1 + 2 * d->qsize] & 0xffff);
        uint16_t now = d->avail_idx, old = d->kicked;
        d->kicked = now;
        /* vring_need_event(): did avail_idx pass event since the last kick? */
        if ((uint16_t)(now - event - 1) >= (uint16_t)(now - old))
            return;
    } else if (d->used[0] & USED_F_NO_NOTIFY) { /* flags: the low half of the first word */
        d->kicked = d->avail_idx; /* the device is polling the ring itself */
        return;
    }
    d->kicked = d->avail_idx;
    wr(d, R_QUEUE_NOTIFY, d->queue);
}

int vblk_wait(struct vblk *d, uint8_t *status)
{
    volatile uint16_t *used_idx = (volatile uint16_t *)d->used + 1;
    if (*used_idx == d->used_idx) {
        /* Nothing to reap: only now must the device hear of what we queued (so a
         * burst of refills between completions costs one doorbell, not one each),
         * or it would never complete. */
        if (d->kicked != d->avail_idx)
            vblk_kick(d);
        uint64_t now = rdtsc();
        uint64_t check = now + tsc_from_ms(STATUS_CHECK_MS), deadline = now + tsc_from_ms(VBLK_TIMEOUT_MS);
        while (*used_idx == d->used_idx) {
            cpu_relax();
            if ((now = rdtsc()) < check)
                continue;
            /* Longer than a request should take: has the device given up on us? */
            uint32_t dev = rd(d, R_STATUS);
            if (dev & S_NEEDS_RESET) {
                kprintf("blk: the device needs a reset (DEVICE_NEEDS_RESET, status 0x%x)\n", dev);
                *status = VBLK_S_BROKEN;
                return -1;
            }
            if (now > deadline) {
                kprintf("blk: no completion within %u ms (device status 0x%x)\n", VBLK_TIMEOUT_MS, dev);
                *status = VBLK_S_TIMEOUT;
                return -1;
            }
            check = now + tsc_from_ms(STATUS_CHECK_MS);
        }
    }
    __asm__ volatile("" ::: "memory"); /* read the entry after the index (x86 keeps loads in order) */
    uint32_t id = d->used[1 + 2 * (d->used_idx % d->qsize)]; /* {id, len} after flags, idx */
    d->used_idx++;
    if (d->event_idx)
        d->avail[2 + d->qsize] = (uint16_t)(d->used_idx - 1 - USED_EVENT_LAG);
    unsigned slot = id / 3;
    if (slot >= d->slots || id % 3 != 0) {
        kprintf("blk: the device returned descriptor %u, which is no request head\n", id);
        *status = VBLK_S_BROKEN;
        return -1;
    }
    *status = d->status[slot];
    return (int)slot;
}

uint8_t vblk_io(struct vblk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
    uint8_t st;
    vblk_submit(d, 0, type, sector, buf, len);
    vblk_kick(d);
    if (vblk_wait(d, &st) < 0)
        return VBLK_S_TIMEOUT;
    return st;
}

void vblk_publish_raw(struct vblk *d, uint16_t head)
{
    d->avail[2 + d->avail_idx % d->qsize] = head;
    __asm__ volatile("" ::: "memory");
    d->avail[1] = ++d->avail_idx;
}

uint32_t vblk_device_status(const struct vblk *d) { return rd(d, R_STATUS); }
void vblk_notify(struct vblk *d) { wr(d, R_QUEUE_NOTIFY, d->queue); }

const char *vblk_status_name(uint8_t status)
{
    switch (status) {
    case VBLK_S_OK: return "OK";
    case VBLK_S_IOERR: return "I/O error";
    case VBLK_S_UNSUPP: return "unsupported";
    case VBLK_S_TIMEOUT: return "no completion";
    case VBLK_S_BROKEN: return "device broken";
    default: return "unknown status";
    }
}
