/* A ring-3 virtio-net driver over virtio-mmio (virtio 1.2, 5.1; transport version 2)
 * for the network jobs. Polled, no interrupts; queue pair 0 only (receiveq 0,
 * transmitq 1), even when the device offers MQ.
 *
 * Features: VERSION_1 (required), MAC, MRG_RXBUF, STATUS, MTU and EVENT_IDX when
 * offered; never CSUM, GUEST_CSUM or any TSO/UFO: the jobs compute their own
 * checksums. The header is 12 bytes either way (VERSION_1); a received header that
 * says NEEDS_CSUM anyway is completed in software, DATA_VALID is ignored.
 *
 * RX: every descriptor of the receive queue is one device-writable buffer of
 * rx_buf bytes (2048 by default), all posted at start and re-posted once the frame
 * in them has been handed out and the caller asks for the next. With MRG_RXBUF a
 * frame may span num_buffers buffers: it is copied into one contiguous area.
 * TX: one preallocated buffer per descriptor (header + frame in one descriptor),
 * reclaimed from the used ring; nothing is allocated per packet. */
#pragma once
#include "lib/types.h"
#include "virtio/virtio_mmio.h"

#define VNET_HDR_LEN 12          /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define VNET_RX_BUF_DEFAULT 2048
#define VNET_FRAME_MAX (64 * 1024) /* the largest frame reassembled from merged buffers */
#define VNET_MIN_FRAME 60        /* shorter frames are padded (Ethernet, without FCS) */
#define VNET_RX_WAIT_MS 100      /* how long the rest of a merged frame may take */

#define VNET_F_MTU 3
#define VNET_F_MAC 5
#define VNET_F_MRG_RXBUF 15
#define VNET_F_STATUS 16

struct vnet {
    uint64_t base;               /* MMIO window */
    uint64_t features;           /* negotiated */
    uint8_t mac[6];              /* the device's (MAC), else 02:00:00:00:00:01 */
    uint16_t mtu;                /* the device's (MTU), else 1500 */
    int link;                    /* STATUS: 1 up, 0 down; -1 without STATUS */
    bool mrg_rxbuf;
    struct vq rx, tx;
    uint32_t rx_buf, tx_buf;     /* bytes per buffer, header included */
    uint8_t *rx_bufs, *tx_bufs;  /* buffer i belongs to descriptor i */
    uint8_t *frame;              /* a frame reassembled from several buffers */
    uint16_t *held;              /* rx buffers of the frame handed out last */
    unsigned nheld;
    uint16_t *tx_free;           /* free tx buffers (a stack) */
    uint8_t *tx_busy;            /* per tx buffer: with the device */
    unsigned tx_nfree;
    unsigned tx_cur;             /* the buffer vnet_tx_buf() handed out */
    bool broken;                 /* the device set NEEDS_RESET or returned garbage */
    /* Counters. */
    uint64_t rx_frames, rx_bad, rx_csum_fixed, tx_frames;
};

/* Finds and initialises virtio-net device `index` (0: the first) with receive
 * buffers of rx_buf bytes (0: 2048; without MRG_RXBUF never less than a whole
 * frame of the MTU). Prints a line about it, or why it failed. */
bool vnet_open(unsigned index, uint32_t rx_buf, struct vnet *n);

/* The next received frame (Ethernet header first, no virtio header) and its length,
 * or 0 if none is waiting. Valid until the next call, which gives its buffers back
 * to the device. Frames the device delivered malformed are counted in rx_bad and
 * skipped; garbage it should never return sets `broken`. */
uint8_t *vnet_rx(struct vnet *n, uint32_t *len);

/* A free transmit buffer's frame area (VNET frame size: tx_buf - VNET_HDR_LEN), or
 * 0 when all are with the device (after reclaiming what it has used). */
uint8_t *vnet_tx_buf(struct vnet *n);
/* Sends the frame written into the buffer vnet_tx_buf() returned (padded to 60
 * bytes). The device hears of it at the next vnet_tx_kick(). */
void vnet_tx_send(struct vnet *n, uint32_t len);
/* Tells the device about sent frames, if it wants to know. */
static inline void vnet_tx_kick(struct vnet *n) { vq_kick(&n->tx); }
/* Reclaims used transmit buffers; returns how many are still with the device. */
unsigned vnet_tx_reclaim(struct vnet *n);
/* Copies a frame into every transmit buffer, so a stream rewrites only what changes. */
void vnet_tx_prefill(struct vnet *n, const uint8_t *frame, uint32_t len);

/* Reads the device status (an exit: call it seldom); false, with a line, if the
 * device needs a reset or the driver saw garbage. */
bool vnet_check(struct vnet *n);
