#include "virtio/virtio_blk.h"

#include "lib/arch.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/user.h"

#define F_BLK_RO 5
#define F_BLK_BLK_SIZE 6
#define F_BLK_FLUSH 9
#define F_BLK_MQ 12
#define F_BLK_DISCARD 13
#define F_BLK_WRITE_ZEROES 14

/* How long vblk_wait() spins before it first reads the device status (an MMIO
 * read is an exit to the VMM, so not on every spin), and between reads. */
#define STATUS_CHECK_MS 10

#define QSIZE_MAX 256

unsigned vblk_count(void) { return vmmio_count_id(VIRTIO_ID_BLK, "blk"); }

static bool fail_init(struct vblk *d, const char *why) { return vmmio_fail(d->base, why, "blk"); }

bool vblk_open(unsigned index, struct vblk *d)
{
    return vblk_open_queue(index, 0, d);
}

bool vblk_open_queue(unsigned index, uint16_t queue, struct vblk *d)
{
    memset(d, 0, sizeof *d);
    if (!vmmio_find(VIRTIO_ID_BLK, index, &d->base, "blk")) {
        kprintf("blk: no disk %u (the command line names %u virtio-mmio devices)\n", index, vmmio_count());
        return false;
    }
    uint64_t want = (1ULL << F_BLK_RO) | (1ULL << F_BLK_BLK_SIZE) | (1ULL << F_BLK_FLUSH) |
                    (1ULL << VIRTIO_F_EVENT_IDX) | (1ULL << F_BLK_MQ) | (1ULL << F_BLK_DISCARD) |
                    (1ULL << F_BLK_WRITE_ZEROES);
    if (!vmmio_negotiate(d->base, want, &d->features, "blk"))
        return false;
    d->read_only = d->features & (1ULL << F_BLK_RO);
    /* The 64-bit capacity takes two reads: retry if the device changed its config
     * in between (ConfigGeneration, virtio 1.2, 2.5.1). */
    uint32_t gen;
    do {
        gen = vmmio_config_generation(d->base);
        d->capacity = (uint64_t)vmmio_config32(d->base, 0) | (uint64_t)vmmio_config32(d->base, 4) << 32;
        d->blk_size = (d->features & (1ULL << F_BLK_BLK_SIZE)) ? vmmio_config32(d->base, 20) : 512;
        /* num_queues is in the config space only when the device offers MQ (bit 12). */
        d->num_queues = (d->features & (1ULL << F_BLK_MQ)) ? (uint16_t)(vmmio_config32(d->base, 32) >> 16) : 1;
    } while (gen != vmmio_config_generation(d->base));

    /* One queue, the `queue`-th: a device with several queues serves each on its own,
     * so a job can exercise any of them (the others stay unused). */
    if (queue >= d->num_queues)
        return fail_init(d, "the device has fewer queues than asked for");
    if (!vq_setup(&d->q, d->base, queue, QSIZE_MAX, 3, d->features & (1ULL << VIRTIO_F_EVENT_IDX), "blk"))
        return false;
    d->slots = d->q.qsize / 3 < VBLK_MAX_INFLIGHT ? d->q.qsize / 3 : VBLK_MAX_INFLIGHT;
    d->hdr = dma_alloc(sizeof(struct vblk_req) * d->slots, 4096);
    d->status = dma_alloc(d->slots, 64);
    if (!d->hdr || !d->status)
        return fail_init(d, "out of guest memory for the queue");
    return vmmio_driver_ok(d->base, "blk");
}

void vblk_submit(struct vblk *d, unsigned slot, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
    /* Fixed chains: slot s uses descriptors 3s (header), 3s+1 (data), 3s+2 (status). */
    volatile struct vring_desc *h = &d->q.desc[3 * slot];
    d->hdr[slot].type = type;
    d->hdr[slot].reserved = 0;
    d->hdr[slot].sector = sector;
    d->status[slot] = 0xff;
    /* The fixed parts too: a chain a caller bent on purpose (blk-hostile) is whole again. */
    h[0].addr = (uint64_t)&d->hdr[slot];
    h[0].len = sizeof(struct vblk_req);
    h[2].addr = (uint64_t)&d->status[slot];
    h[2].len = 1;
    h[2].flags = VRING_DESC_F_WRITE;
    if (len) {
        h[0].flags = VRING_DESC_F_NEXT;
        h[0].next = (uint16_t)(3 * slot + 1);
        h[1].addr = (uint64_t)buf;
        h[1].len = len;
        /* The device reads the data of writes, discards and write-zeroes (their range
         * list); it writes the data of everything else. */
        const bool to_device = type == VBLK_T_OUT || type == VBLK_T_DISCARD || type == VBLK_T_WRITE_ZEROES;
        h[1].flags = (uint16_t)(VRING_DESC_F_NEXT | (to_device ? 0 : VRING_DESC_F_WRITE));
        h[1].next = (uint16_t)(3 * slot + 2);
    } else {
        h[0].flags = VRING_DESC_F_NEXT;
        h[0].next = (uint16_t)(3 * slot + 2);
    }
    vq_publish(&d->q, (uint16_t)(3 * slot));
}

int vblk_wait(struct vblk *d, uint8_t *status)
{
    if (!vq_used_pending(&d->q)) {
        /* Nothing to reap: only now must the device hear of what we queued (so a
         * burst of refills between completions costs one doorbell, not one each),
         * or it would never complete. */
        if (d->q.kicked != d->q.avail_idx)
            vq_kick(&d->q);
        uint64_t now = rdtsc();
        uint64_t check = now + tsc_from_ms(STATUS_CHECK_MS), deadline = now + tsc_from_ms(VBLK_TIMEOUT_MS);
        while (!vq_used_pending(&d->q)) {
            cpu_relax();
            if ((now = rdtsc()) < check)
                continue;
            /* Longer than a request should take: has the device given up on us? */
            uint32_t dev = vmmio_status(d->base);
            if (dev & VIRTIO_S_NEEDS_RESET) {
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
    uint32_t id, len;
    vq_pop_used(&d->q, &id, &len);
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
    vq_kick(&d->q);
    if (vblk_wait(d, &st) < 0)
        return VBLK_S_TIMEOUT;
    return st;
}

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
