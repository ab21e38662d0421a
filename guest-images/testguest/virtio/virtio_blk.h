/* A ring-3 virtio-blk driver over virtio-mmio (virtio 1.2, transport version 2)
 * for the disk jobs. It polls the used ring (no interrupts), keeps one split
 * virtqueue (queue 0 unless asked for another) with up to VBLK_MAX_INFLIGHT
 * requests in flight, each a fixed three-descriptor chain: header, data, status.
 *
 * Devices come from the `virtio_mmio.device=SIZE@BASE:IRQ` command-line words
 * (Linux's syntax), in order; vblk_open(i) takes the i-th one whose DeviceID
 * is 2 (block). The transport and the ring are virtio_mmio.c's. */
#pragma once
#include "lib/types.h"
#include "virtio/virtio_mmio.h"

#define VBLK_SECTOR 512
#define VBLK_MAX_INFLIGHT 64

/* Request types and statuses (virtio 1.2, 5.2.6). */
#define VBLK_T_IN 0
#define VBLK_T_OUT 1
#define VBLK_T_FLUSH 4
#define VBLK_T_GET_ID 8
#define VBLK_T_DISCARD 11
#define VBLK_T_WRITE_ZEROES 13
#define VBLK_F_DISCARD 13
#define VBLK_F_WRITE_ZEROES 14
#define VBLK_WRITE_ZEROES_UNMAP 1

/* One range of a DISCARD or WRITE_ZEROES request (virtio 1.2, 5.2.6). */
struct vblk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};
#define VBLK_F_FLUSH (1ULL << 9) /* in struct vblk's features: T_FLUSH is supported */
#define VBLK_S_OK 0
#define VBLK_S_IOERR 1
#define VBLK_S_UNSUPP 2
/* Ours, never written by a device: what vblk_wait() reports when it gives up. */
#define VBLK_S_TIMEOUT 0xff      /* no completion within VBLK_TIMEOUT_MS */
#define VBLK_S_BROKEN 0xfe       /* DEVICE_NEEDS_RESET, or a used entry that is no request */
#define VBLK_TIMEOUT_MS 20000

struct vblk_req {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct vblk {
    uint64_t base;               /* MMIO window */
    uint64_t capacity;           /* in 512-byte sectors */
    uint64_t features;           /* negotiated */
    uint32_t blk_size;
    uint16_t num_queues;         /* the device's */
    bool read_only;
    struct vq q;                 /* the one queue this driver uses (q.index) */
    /* Per-slot request headers and status bytes. */
    struct vblk_req *hdr;
    volatile uint8_t *status;
    unsigned slots;              /* requests that fit (qsize / 3, at most VBLK_MAX_INFLIGHT) */
};

/* Finds and initialises block device `index`. Prints why on failure. */
bool vblk_open(unsigned index, struct vblk *d);
/* The same on queue `queue` of the device (< its num_queues) instead of queue 0. */
bool vblk_open_queue(unsigned index, uint16_t queue, struct vblk *d);
/* How many of the command line's virtio-mmio devices are block devices (what disk=I counts). */
unsigned vblk_count(void);

/* Queues request `slot` (< d->slots): `type` at `sector`, data [buf, +len)
 * (len 0: no data descriptor). Returns false if the slot is out of range. */
void vblk_submit(struct vblk *d, unsigned slot, uint32_t type, uint64_t sector, void *buf, uint32_t len);
/* Tells the device about submitted requests, if it wants to know (EVENT_IDX). */
static inline void vblk_kick(struct vblk *d) { vq_kick(&d->q); }
/* Waits for the next completion (kicking first, if submissions are pending and
 * the used ring is empty): its slot, and its status in *status. Returns -1 with
 * VBLK_S_TIMEOUT after VBLK_TIMEOUT_MS, or VBLK_S_BROKEN when the device sets
 * DEVICE_NEEDS_RESET (checked every few ms while waiting) or returns garbage. */
int vblk_wait(struct vblk *d, uint8_t *status);
/* Does one request synchronously (slot 0): its status. */
uint8_t vblk_io(struct vblk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len);

const char *vblk_status_name(uint8_t status);

/* For job=blk-hostile, which breaks the rules on purpose: put descriptor `head` on
 * the available ring as it is (no checks) with vq_publish(&d->q, head), notify with
 * vq_notify(&d->q) whatever EVENT_IDX says, read the device status with vmmio_status(). */
