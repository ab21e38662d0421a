/* The virtio-mmio transport and split virtqueues shared by the ring-3 drivers
 * (virtio_mmio.h). */
#include "virtio/virtio_mmio.h"

#include "lib/arch.h"
#include "lib/cmdline.h"
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
#define S_NEEDS_RESET VIRTIO_S_NEEDS_RESET
#define S_FAILED 128

#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1

/* used_event is kept this far behind the used index: we poll, and the device
 * would only interrupt once its used index crossed it (after 49152 completions
 * we have not reaped, which cannot happen with at most 256 entries a queue). */
#define USED_EVENT_LAG 0x4000

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

static uint32_t rd(uint64_t base, uint32_t reg) { return mmio_read32(base + reg); }
static void wr(uint64_t base, uint32_t reg, uint32_t v) { mmio_write32(base + reg, v); }
static void wr64(uint64_t base, uint32_t reg, uint64_t v)
{
    wr(base, reg, (uint32_t)v);
    wr(base, reg + 4, (uint32_t)(v >> 32));
}

/* "4K", "0x1000", "1M": Linux's memparse, enough of it. */
static const char *parse_num(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        base = 16, s += 2;
    const char *start = s;
    for (int dgt; (dgt = digit_value(*s, base)) >= 0; s++)
        v = v * base + (unsigned)dgt;
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

/* A virtio-mmio window a driver can use: below 4 GiB (the 32-bit hole), large
 * enough for the registers and a device config, and mapped for ring 3 (the boot
 * map covers RAM and 3..4 GiB; anything else is mapped on demand). Then whether a
 * virtio device of type `device_id` answers there. */
static bool vmmio_is(uint64_t base, uint64_t size, uint32_t device_id, const char *who)
{
    if (size < 0x200 || base + size < base || base + size > GiB(4)) {
        kprintf("%s: virtio-mmio window 0x%lx+0x%lx is not in the 32-bit MMIO hole\n", who, base, size);
        return false;
    }
    if (!platform_is_mapped(base, size) && !sys_map_mmio(base, size)) {
        kprintf("%s: cannot map the virtio-mmio window 0x%lx+0x%lx\n", who, base, size);
        return false;
    }
    return mmio_read32(base + R_MAGIC) == 0x74726976 && mmio_read32(base + R_DEVICE_ID) == device_id;
}

unsigned vmmio_count_id(uint32_t device_id, const char *who)
{
    unsigned n = 0;
    uint64_t base, size;
    for (unsigned w = 0; vmmio_word(w, &base, &size); w++)
        n += vmmio_is(base, size, device_id, who);
    return n;
}

bool vmmio_find(uint32_t device_id, unsigned index, uint64_t *base, const char *who)
{
    unsigned found = 0;
    uint64_t b, size;
    for (unsigned w = 0; vmmio_word(w, &b, &size); w++)
        if (vmmio_is(b, size, device_id, who) && found++ == index) {
            *base = b;
            return true;
        }
    return false;
}

bool vmmio_fail(uint64_t base, const char *why, const char *who)
{
    kprintf("%s: device at 0x%lx: %s\n", who, base, why);
    wr(base, R_STATUS, rd(base, R_STATUS) | S_FAILED);
    return false;
}

bool vmmio_negotiate(uint64_t base, uint64_t want, uint64_t *features, const char *who)
{
    if (rd(base, R_VERSION) != 2)
        return vmmio_fail(base, "not a virtio-mmio version 2 (non-legacy) device", who);
    wr(base, R_STATUS, 0); /* reset */
    wr(base, R_STATUS, S_ACKNOWLEDGE);
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    wr(base, R_DEVICE_FEATURES_SEL, 0);
    uint64_t offered = rd(base, R_DEVICE_FEATURES);
    wr(base, R_DEVICE_FEATURES_SEL, 1);
    offered |= (uint64_t)rd(base, R_DEVICE_FEATURES) << 32;
    if (!(offered & (1ULL << VIRTIO_F_VERSION_1)))
        return vmmio_fail(base, "does not offer VIRTIO_F_VERSION_1", who);
    *features = offered & (want | 1ULL << VIRTIO_F_VERSION_1);
    wr(base, R_DRIVER_FEATURES_SEL, 0);
    wr(base, R_DRIVER_FEATURES, (uint32_t)*features);
    wr(base, R_DRIVER_FEATURES_SEL, 1);
    wr(base, R_DRIVER_FEATURES, (uint32_t)(*features >> 32));
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    if (!(rd(base, R_STATUS) & S_FEATURES_OK))
        return vmmio_fail(base, "refused our features", who);
    return true;
}

bool vq_setup(struct vq *q, uint64_t base, uint16_t index, uint16_t max_size, uint16_t min_size, bool event_idx,
              const char *who)
{
    memset(q, 0, sizeof *q);
    q->base = base;
    q->index = index;
    q->event_idx = event_idx;
    wr(base, R_QUEUE_SEL, index);
    uint32_t max = rd(base, R_QUEUE_NUM_MAX);
    if (max == 0)
        return vmmio_fail(base, "the queue is not available", who);
    q->qsize = (uint16_t)(max < max_size ? max : max_size);
    if (q->qsize < min_size)
        return vmmio_fail(base, "queue too small", who);
    q->desc = dma_alloc(16u * q->qsize, 4096);
    q->avail = dma_alloc(6u + 2u * q->qsize, 4096);
    q->used = dma_alloc(6u + 8u * q->qsize, 4096);
    if (!q->desc || !q->avail || !q->used)
        return vmmio_fail(base, "out of guest memory for the queue", who);
    /* We poll: ask for no interrupts. With EVENT_IDX the flags must stay 0
     * (virtio 1.2, 2.7.7.1) and used_event says it; without, the flag does. */
    if (event_idx)
        q->avail[2 + q->qsize] = (uint16_t)(0 - 1 - USED_EVENT_LAG);
    else
        q->avail[0] = AVAIL_F_NO_INTERRUPT;
    wr(base, R_QUEUE_NUM, q->qsize);
    wr64(base, R_QUEUE_DESC, (uint64_t)q->desc);
    wr64(base, R_QUEUE_DRIVER, (uint64_t)q->avail);
    wr64(base, R_QUEUE_DEVICE, (uint64_t)q->used);
    wr(base, R_QUEUE_READY, 1);
    return true;
}

bool vmmio_driver_ok(uint64_t base, const char *who)
{
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    if (rd(base, R_STATUS) & (S_NEEDS_RESET | S_FAILED))
        return vmmio_fail(base, "failed after DRIVER_OK", who);
    return true;
}

uint32_t vmmio_status(uint64_t base) { return rd(base, R_STATUS); }
uint32_t vmmio_config_generation(uint64_t base) { return rd(base, R_CONFIG_GENERATION); }
uint8_t vmmio_config8(uint64_t base, uint32_t off) { return *(volatile uint8_t *)(base + R_CONFIG + off); }
uint16_t vmmio_config16(uint64_t base, uint32_t off) { return *(volatile uint16_t *)(base + R_CONFIG + off); }
uint32_t vmmio_config32(uint64_t base, uint32_t off) { return rd(base, R_CONFIG + off); }

void vq_publish(struct vq *q, uint16_t head)
{
    q->avail[2 + q->avail_idx % q->qsize] = head;
    __asm__ volatile("" ::: "memory"); /* x86 keeps stores in order; the compiler must too */
    q->avail[1] = ++q->avail_idx;
}

void vq_kick(struct vq *q)
{
    /* A store-load fence: the device must see avail->idx before we read its
     * avail_event, or both sides may decide the other will act. */
    __asm__ volatile("mfence" ::: "memory");
    if (q->event_idx) {
        uint16_t event = (uint16_t)(q->used[1 + 2 * q->qsize] & 0xffff);
        uint16_t now = q->avail_idx, old = q->kicked;
        q->kicked = now;
        /* vring_need_event(): did avail_idx pass event since the last kick? */
        if ((uint16_t)(now - event - 1) >= (uint16_t)(now - old))
            return;
    } else if (q->used[0] & USED_F_NO_NOTIFY) { /* flags: the low half of the first word */
        q->kicked = q->avail_idx; /* the device is polling the ring itself */
        return;
    }
    q->kicked = q->avail_idx;
    wr(q->base, R_QUEUE_NOTIFY, q->index);
}

void vq_notify(struct vq *q) { wr(q->base, R_QUEUE_NOTIFY, q->index); }

void vq_pop_used(struct vq *q, uint32_t *id, uint32_t *len)
{
    __asm__ volatile("" ::: "memory"); /* read the entry after the index (x86 keeps loads in order) */
    const volatile uint32_t *e = &q->used[1 + 2 * (q->used_idx % q->qsize)]; /* {id, len} after flags, idx */
    *id = e[0];
    *len = e[1];
    q->used_idx++;
    if (q->event_idx)
        q->avail[2 + q->qsize] = (uint16_t)(q->used_idx - 1 - USED_EVENT_LAG);
}
