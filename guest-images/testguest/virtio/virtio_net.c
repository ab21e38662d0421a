#include "virtio/virtio_net.h"

#include "lib/arch.h"
#include "lib/console.h"
#include "lib/inet.h"
#include "lib/string.h"
#include "user/user.h"

#define Q_RX 0
#define Q_TX 1
#define QSIZE_MAX 256

/* virtio_net_config (virtio 1.2, 5.1.4): offsets. */
#define CFG_MAC 0
#define CFG_STATUS 6
#define CFG_MTU 10
#define NET_S_LINK_UP 1

/* virtio_net_hdr flags (5.1.6). */
#define HDR_F_NEEDS_CSUM 1
#define HDR_F_DATA_VALID 2

struct vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
};
_Static_assert(sizeof(struct vnet_hdr) == VNET_HDR_LEN, "virtio_net_hdr is 12 bytes");

static bool fail(struct vnet *n, const char *why) { return vmmio_fail(n->base, why, "net"); }

static void read_config(struct vnet *n)
{
    static const uint8_t default_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
    uint32_t gen;
    do {
        gen = vmmio_config_generation(n->base);
        for (int i = 0; i < 6; i++)
            n->mac[i] = (n->features & (1ULL << VNET_F_MAC)) ? vmmio_config8(n->base, CFG_MAC + (uint32_t)i)
                                                             : default_mac[i];
        n->link = (n->features & (1ULL << VNET_F_STATUS)) ? (vmmio_config16(n->base, CFG_STATUS) & NET_S_LINK_UP)
                                                           : -1;
        n->mtu = (n->features & (1ULL << VNET_F_MTU)) ? vmmio_config16(n->base, CFG_MTU) : 1500;
    } while (gen != vmmio_config_generation(n->base));
    if (n->mtu < 68)
        n->mtu = 68; /* the IPv4 minimum: a device that says less is wrong */
}

bool vnet_open(unsigned index, uint32_t rx_buf, struct vnet *n)
{
    memset(n, 0, sizeof *n);
    if (!vmmio_find(VIRTIO_ID_NET, index, &n->base, "net")) {
        kprintf("net: no network device %u (the command line names %u virtio-mmio devices)\n", index,
                vmmio_count());
        return false;
    }
    uint64_t want = (1ULL << VNET_F_MAC) | (1ULL << VNET_F_MRG_RXBUF) | (1ULL << VNET_F_STATUS) |
                    (1ULL << VNET_F_MTU) | (1ULL << VIRTIO_F_EVENT_IDX);
    if (!vmmio_negotiate(n->base, want, &n->features, "net"))
        return false;
    n->mrg_rxbuf = n->features & (1ULL << VNET_F_MRG_RXBUF);
    read_config(n);

    /* A buffer holds the header and, without MRG_RXBUF, a whole frame of the MTU
     * (with a VLAN tag): 5.1.6.3.1. With it, any size of at least the header. */
    const uint32_t whole = (uint32_t)ALIGN_UP(VNET_HDR_LEN + 18u + n->mtu, 64);
    n->rx_buf = rx_buf >= 64 ? rx_buf : rx_buf ? 64 : VNET_RX_BUF_DEFAULT;
    if (!n->mrg_rxbuf && n->rx_buf < whole)
        n->rx_buf = whole;
    n->tx_buf = whole > VNET_RX_BUF_DEFAULT ? whole : VNET_RX_BUF_DEFAULT;

    const bool event_idx = n->features & (1ULL << VIRTIO_F_EVENT_IDX);
    if (!vq_setup(&n->rx, n->base, Q_RX, QSIZE_MAX, 1, event_idx, "net") ||
        !vq_setup(&n->tx, n->base, Q_TX, QSIZE_MAX, 1, event_idx, "net"))
        return false;
    n->rx_bufs = dma_alloc((uint64_t)n->rx_buf * n->rx.qsize, 4096);
    n->tx_bufs = dma_alloc((uint64_t)n->tx_buf * n->tx.qsize, 4096);
    n->frame = dma_alloc(VNET_FRAME_MAX, 4096);
    n->held = dma_alloc(2u * n->rx.qsize, 64);
    n->tx_free = dma_alloc(2u * n->tx.qsize, 64);
    n->tx_busy = dma_alloc(n->tx.qsize, 64);
    if (!n->rx_bufs || !n->tx_bufs || !n->frame || !n->held || !n->tx_free || !n->tx_busy)
        return fail(n, "out of guest memory for the queues");
    /* Fixed descriptors: rx i -> rx buffer i (device-writable), tx i -> tx buffer i.
     * Every receive buffer is posted now; the transmit headers stay all zero. */
    for (uint16_t i = 0; i < n->rx.qsize; i++) {
        n->rx.desc[i].addr = (uint64_t)(n->rx_bufs + (uint64_t)i * n->rx_buf);
        n->rx.desc[i].len = n->rx_buf;
        n->rx.desc[i].flags = VRING_DESC_F_WRITE;
        vq_publish(&n->rx, i);
    }
    for (uint16_t i = 0; i < n->tx.qsize; i++) {
        n->tx.desc[i].addr = (uint64_t)(n->tx_bufs + (uint64_t)i * n->tx_buf);
        n->tx_free[n->tx_nfree++] = (uint16_t)(n->tx.qsize - 1 - i);
    }
    if (!vmmio_driver_ok(n->base, "net"))
        return false;
    vq_notify(&n->rx);
    n->rx.kicked = n->rx.avail_idx;
    kprintf("net: device at 0x%lx features=0x%lx mac=%02x:%02x:%02x:%02x:%02x:%02x mtu=%u link=%s mrg_rxbuf=%u "
            "event_idx=%u rx_queue=%u x %u bytes tx_queue=%u\n",
            n->base, n->features, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->mtu,
            n->link < 0 ? "unknown" : n->link ? "up" : "down", n->mrg_rxbuf, event_idx, n->rx.qsize, n->rx_buf,
            n->tx.qsize);
    return true;
}

static bool garbage(struct vnet *n, const char *what, uint32_t v)
{
    if (!n->broken)
        kprintf("net: the device returned %s %u\n", what, v);
    n->broken = true;
    return false;
}

/* Pops the next used receive buffer: its index and how many bytes the device wrote. */
static bool rx_pop(struct vnet *n, uint16_t *id, uint32_t *len)
{
    uint32_t i;
    vq_pop_used(&n->rx, &i, len);
    if (i >= n->rx.qsize)
        return garbage(n, "receive descriptor", i);
    if (*len > n->rx_buf)
        return garbage(n, "a receive length of", *len);
    if (n->nheld >= n->rx.qsize)
        return garbage(n, "more used receive buffers than it had, at descriptor", i);
    *id = (uint16_t)i;
    n->held[n->nheld++] = *id; /* given back at the next vnet_rx() */
    return true;
}

/* The rest of a frame spread over `more` buffers, appended at frame + *len. */
static bool rx_gather(struct vnet *n, unsigned more, uint32_t *len)
{
    bool fits = true;
    for (unsigned k = 0; k < more; k++) {
        if (!vq_used_pending(&n->rx)) {
            /* The device should publish a frame's buffers together; give it a moment. */
            uint64_t end = rdtsc() + tsc_from_ms(VNET_RX_WAIT_MS);
            while (!vq_used_pending(&n->rx) && rdtsc() < end)
                cpu_relax();
            if (!vq_used_pending(&n->rx))
                return garbage(n, "fewer merged buffers than num_buffers said, short by", more - k);
        }
        uint16_t id;
        uint32_t part;
        if (!rx_pop(n, &id, &part))
            return false;
        if (*len + part > VNET_FRAME_MAX)
            fits = false;
        if (fits)
            memcpy(n->frame + *len, n->rx_bufs + (uint64_t)id * n->rx_buf, part);
        *len += part;
    }
    return fits;
}

uint8_t *vnet_rx(struct vnet *n, uint32_t *len)
{
    if (n->nheld) {
        for (unsigned i = 0; i < n->nheld; i++)
            vq_publish(&n->rx, n->held[i]);
        n->nheld = 0;
        vq_kick(&n->rx);
    }
    while (vq_used_pending(&n->rx) && !n->broken) {
        uint16_t id;
        uint32_t got;
        if (!rx_pop(n, &id, &got))
            return 0;
        uint8_t *buf = n->rx_bufs + (uint64_t)id * n->rx_buf;
        struct vnet_hdr h;
        memcpy(&h, buf, sizeof h);
        if (got < VNET_HDR_LEN) {
            n->rx_bad++;
            continue;
        }
        uint8_t *frame = buf + VNET_HDR_LEN;
        uint32_t flen = got - VNET_HDR_LEN;
        unsigned nbuf = n->mrg_rxbuf ? h.num_buffers : 1;
        if (nbuf == 0 || nbuf > n->rx.qsize) {
            garbage(n, "num_buffers", nbuf);
            return 0;
        }
        if (nbuf > 1) {
            memcpy(n->frame, frame, flen);
            frame = n->frame;
            if (!rx_gather(n, nbuf - 1, &flen)) {
                n->rx_bad++; /* too long to reassemble, or the device broke */
                continue;
            }
        }
        /* NEEDS_CSUM: the device left only the pseudo-header's sum in the field (5.1.6.4.1). */
        if (h.flags & HDR_F_NEEDS_CSUM) {
            if (!csum_complete(frame, flen, h.csum_start, h.csum_offset)) {
                n->rx_bad++;
                continue;
            }
            n->rx_csum_fixed++;
        }
        /* DATA_VALID is ignored: the jobs check what they use. */
        n->rx_frames++;
        *len = flen;
        return frame;
    }
    return 0;
}

unsigned vnet_tx_reclaim(struct vnet *n)
{
    while (vq_used_pending(&n->tx)) {
        uint32_t id, len;
        vq_pop_used(&n->tx, &id, &len);
        if (id >= n->tx.qsize || !n->tx_busy[id]) {
            garbage(n, "transmit descriptor", id);
            break;
        }
        n->tx_busy[id] = 0;
        n->tx_free[n->tx_nfree++] = (uint16_t)id;
    }
    return n->tx.qsize - n->tx_nfree;
}

uint8_t *vnet_tx_buf(struct vnet *n)
{
    if (!n->tx_nfree)
        vnet_tx_reclaim(n);
    if (!n->tx_nfree || n->broken)
        return 0;
    n->tx_cur = n->tx_free[--n->tx_nfree];
    return n->tx_bufs + (uint64_t)n->tx_cur * n->tx_buf + VNET_HDR_LEN;
}

void vnet_tx_send(struct vnet *n, uint32_t len)
{
    uint8_t *frame = n->tx_bufs + (uint64_t)n->tx_cur * n->tx_buf + VNET_HDR_LEN;
    if (len < VNET_MIN_FRAME) {
        memset(frame + len, 0, VNET_MIN_FRAME - len);
        len = VNET_MIN_FRAME;
    }
    n->tx.desc[n->tx_cur].len = VNET_HDR_LEN + len;
    n->tx_busy[n->tx_cur] = 1;
    vq_publish(&n->tx, (uint16_t)n->tx_cur);
    n->tx_frames++;
}

void vnet_tx_prefill(struct vnet *n, const uint8_t *frame, uint32_t len)
{
    for (unsigned i = 0; i < n->tx.qsize; i++)
        memcpy(n->tx_bufs + (uint64_t)i * n->tx_buf + VNET_HDR_LEN, frame, len);
}

bool vnet_check(struct vnet *n)
{
    uint32_t dev = vmmio_status(n->base);
    if (dev & VIRTIO_S_NEEDS_RESET) {
        kprintf("net: the device needs a reset (DEVICE_NEEDS_RESET, status 0x%x)\n", dev);
        n->broken = true;
    }
    return !n->broken;
}
