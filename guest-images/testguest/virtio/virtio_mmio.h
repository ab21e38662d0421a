/* The virtio-mmio transport (virtio 1.2, 4.2.2: version 2 only, no legacy) and split
 * virtqueues (2.7), shared by the ring-3 drivers (virtio_blk.c, virtio_net.c).
 *
 * Devices come from the `virtio_mmio.device=SIZE@BASE:IRQ` command-line words (Linux's
 * syntax), in order; vmmio_find(id, i) takes the i-th one whose DeviceID is `id`
 * (other device types are skipped and not counted). The drivers poll used rings and
 * ask for no interrupts. Memory for rings and buffers comes from dma_alloc(): RAM
 * above the guest image, identity-mapped, so addresses are physical.
 *
 * Messages start with the driver's prefix (`who`: "blk", "net"). */
#pragma once
#include "lib/types.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2

/* Transport feature bits (virtio 1.2, 6). */
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device status bits (virtio 1.2, 2.1). */
#define VIRTIO_S_NEEDS_RESET 64

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* One split virtqueue, polled. */
struct vq {
    uint64_t base;               /* the device's MMIO window */
    uint16_t index;              /* the queue's number */
    uint16_t qsize;
    bool event_idx;              /* VIRTIO_F_EVENT_IDX negotiated */
    /* The split ring (each part in its own page). */
    volatile struct vring_desc *desc;
    volatile uint16_t *avail;    /* flags, idx, ring[qsize], used_event */
    volatile uint32_t *used;     /* flags|idx, then {id, len} pairs, then avail_event */
    uint16_t avail_idx, used_idx;
    uint16_t kicked;             /* avail_idx at the last vq_kick() */
};

/* Memory for DMA: `size` bytes aligned to `align` above the guest image, zeroed,
 * never freed. 0 when RAM runs out. */
void *dma_alloc(uint64_t size, uint64_t align);

/* How many virtio-mmio words the command line has. */
unsigned vmmio_count(void);
/* How many of them are devices of type `device_id` (prints why a window is unusable). */
unsigned vmmio_count_id(uint32_t device_id, const char *who);
/* The window of the `index`-th device of type `device_id`; false if there is none. */
bool vmmio_find(uint32_t device_id, unsigned index, uint64_t *base, const char *who);

/* Version check, reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 required; the
 * offered ones of `want` are taken), FEATURES_OK and its check. The negotiated
 * features in *features. On failure prints why and sets FAILED. */
bool vmmio_negotiate(uint64_t base, uint64_t want, uint64_t *features, const char *who);
/* Sets up queue `index` with min(QueueNumMax, max_size) entries (fails below
 * `min_size`): rings from dma_alloc(), no interrupts asked for, QueueReady. */
bool vq_setup(struct vq *q, uint64_t base, uint16_t index, uint16_t max_size, uint16_t min_size, bool event_idx,
              const char *who);
/* DRIVER_OK, then checks that the device did not fail. */
bool vmmio_driver_ok(uint64_t base, const char *who);
/* Prints "WHO: device at 0x...: WHY", sets FAILED; returns false. */
bool vmmio_fail(uint64_t base, const char *why, const char *who);

uint32_t vmmio_status(uint64_t base);
/* Device-specific configuration (at 0x100), accessed at each field's width (4.2.2.2).
 * Read fields between two equal vmmio_config_generation() values (2.5.1). */
uint32_t vmmio_config_generation(uint64_t base);
uint8_t vmmio_config8(uint64_t base, uint32_t off);
uint16_t vmmio_config16(uint64_t base, uint32_t off);
uint32_t vmmio_config32(uint64_t base, uint32_t off);

/* Puts descriptor chain `head` on the available ring (no checks). */
void vq_publish(struct vq *q, uint16_t head);
/* Tells the device about published chains, if it wants to know (EVENT_IDX's
 * avail_event, or VIRTQ_USED_F_NO_NOTIFY). */
void vq_kick(struct vq *q);
/* QueueNotify, whatever the device asked for. */
void vq_notify(struct vq *q);
/* Whether the used ring holds an entry not yet popped. */
static inline bool vq_used_pending(const struct vq *q)
{
    return ((const volatile uint16_t *)q->used)[1] != q->used_idx;
}
/* Pops the next used entry (only after vq_used_pending()): its id and len. */
void vq_pop_used(struct vq *q, uint32_t *id, uint32_t *len);
