/* The network jobs, over the ring-3 virtio-net driver (virtio/virtio_net.c) on the
 * first virtio-net device. ip=A.B.C.D is the guest's address (required); the jobs
 * answer ARP requests for it (and ICMP echo requests to it) whatever they do else.
 * rxbuf=BYTES sets the size of the receive buffers (default 2048).
 *
 *   net-echo ip=A.B.C.D [seconds=S]
 *       answers ARP, ICMP echo, and echoes UDP datagrams sent to port 7 back to the
 *       sender, until the VM is stopped (or S seconds have passed)
 *   net-bench mode=tx ip=A.B.C.D dst=A.B.C.D:PORT [dstmac=MAC] [size=BYTES] [sport=P] [seconds=S]
 *       sends UDP datagrams of `size` payload bytes to dst for S seconds (the MAC
 *       from ARP unless given)
 *   net-bench mode=rx ip=A.B.C.D [port=P] [seconds=S] [wait=W] [seq=0|1]
 *       counts the UDP datagrams to ip:port for S seconds from the first one
 * Both benches print `pps=N gbps=N.NNN` (Gbit/s of UDP payload) and counters.
 * Exit: 0 ok, 1 no ARP answer (tx) or no datagram (rx), 2 bad arguments, 5 no
 * network device, 6 the device needs a reset or returned garbage. */
#include "jobs/jobs.h"
#include "lib/arch.h"
#include "lib/cmdline.h"
#include "lib/console.h"
#include "lib/inet.h"
#include "lib/string.h"
#include "user/user.h"
#include "virtio/virtio_net.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ARP_LEN 28
#define IP_HLEN 20
#define UDP_HLEN 8
#define ICMP_HLEN 8
#define PROTO_ICMP 1
#define PROTO_UDP 17
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ECHO_PORT 7
#define CHECK_MS 100      /* the device status is read this often */
#define ARP_RETRY_MS 1000 /* net-bench tx: an ARP request this often */
#define DRAIN_MS 5000     /* net-bench tx: how long the device may take for the last frames */

struct net {
    struct vnet dev;
    uint8_t ip[4];
    bool echo_udp;                /* echo UDP port 7 (net-echo) */
    /* net-bench tx: the address to resolve, and its MAC once an ARP packet told it. */
    uint8_t peer_ip[4], peer_mac[6];
    bool resolved;
    uint16_t ip_id;
    uint64_t next_check;
    struct {
        uint64_t rx, arp, icmp, udp, other, bad, dropped;
    } c;
};

/* A UDP datagram to our address that net_input() did not answer itself. */
struct udp_in {
    uint16_t dport;
    const uint8_t *data;
    uint32_t len;
};

static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static int arg_ip(const char *key, uint8_t ip[4], uint16_t *port)
{
    char buf[32];
    if (!arg_str(key, "", buf, sizeof buf))
        return EXIT_USAGE;
    char *colon = 0;
    for (char *p = buf; *p; p++)
        if (*p == ':')
            colon = p;
    uint64_t v = 0;
    if (port && colon)
        *colon = 0;
    bool ok = parse_ipv4(buf, ip) && (!port || (colon && parse_u64(colon + 1, &v) && v >= 1 && v <= 65535));
    if (!ok) {
        if (colon)
            *colon = ':';
        kprintf("testguest: bad value for %s: '%s' (expected A.B.C.D%s)\n", key, buf, port ? ":PORT" : "");
        return EXIT_USAGE;
    }
    if (port)
        *port = (uint16_t)v;
    return EXIT_OK;
}

static int net_open(struct net *s)
{
    uint64_t rxbuf;
    memset(s, 0, sizeof *s);
    int rc = arg_ip("ip", s->ip, 0);
    if (rc || !arg_u64("rxbuf", VNET_RX_BUF_DEFAULT, 64, 65536, &rxbuf))
        return EXIT_USAGE;
    if (!vnet_open(0, (uint32_t)rxbuf, &s->dev))
        return EXIT_NODEV;
    s->next_check = rdtsc() + tsc_from_ms(CHECK_MS);
    return EXIT_OK;
}

static void print_ready(const char *job, const struct net *s)
{
    const uint8_t *m = s->dev.mac;
    kprintf("%s: mac=%02x:%02x:%02x:%02x:%02x:%02x ip=%u.%u.%u.%u ready\n", job, m[0], m[1], m[2], m[3], m[4], m[5],
            s->ip[0], s->ip[1], s->ip[2], s->ip[3]);
}

/* Reads the device status every CHECK_MS; false once it is broken. */
static bool device_ok(struct net *s, uint64_t now)
{
    if (now >= s->next_check) {
        s->next_check = now + tsc_from_ms(CHECK_MS);
        return vnet_check(&s->dev);
    }
    return !s->dev.broken;
}

/* Starts a frame to `dst` in a transmit buffer: its start, or 0 (counted as
 * dropped) when no buffer is free or it would not fit. */
static uint8_t *frame_start(struct net *s, const uint8_t *dst, uint16_t type, uint32_t len)
{
    uint8_t *f = len <= s->dev.tx_buf - VNET_HDR_LEN ? vnet_tx_buf(&s->dev) : 0;
    if (!f) {
        s->c.dropped++;
        return 0;
    }
    memcpy(f, dst, 6);
    memcpy(f + 6, s->dev.mac, 6);
    put_be16(f + 12, type);
    return f;
}

static void frame_send(struct net *s, uint32_t len)
{
    vnet_tx_send(&s->dev, len);
    vnet_tx_kick(&s->dev);
}

/* An IPv4 header from us to `dst` (no options, DF, TTL 64) with its checksum. */
static void ip_header(struct net *s, uint8_t *ip, const uint8_t *dst, uint8_t proto, uint32_t payload)
{
    ip[0] = 0x45;
    ip[1] = 0;
    put_be16(ip + 2, (uint16_t)(IP_HLEN + payload));
    put_be16(ip + 4, s->ip_id++);
    put_be16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = proto;
    put_csum(ip + 10, 0);
    memcpy(ip + 12, s->ip, 4);
    memcpy(ip + 16, dst, 4);
    put_csum(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
}

/* The sum of the UDP pseudo-header of the IPv4 header `ip`. */
static uint64_t udp_pseudo_sum(const uint8_t *ip, uint16_t ulen)
{
    const uint8_t ph[4] = { 0, PROTO_UDP, (uint8_t)(ulen >> 8), (uint8_t)ulen };
    return csum_add(csum_add(0, ip + 12, 8), ph, sizeof ph);
}

/* Stores the UDP checksum of the datagram after `ip` (its field must be 0). */
static void udp_set_csum(const uint8_t *ip, uint8_t *udp, uint16_t ulen)
{
    uint16_t c = csum_fold(csum_add(udp_pseudo_sum(ip, ulen), udp, ulen));
    put_csum(udp + 6, c ? c : 0xffff);
}

static void arp_send(struct net *s, uint16_t op, const uint8_t *eth_dst, const uint8_t *tha, const uint8_t *tpa)
{
    uint8_t *f = frame_start(s, eth_dst, ETH_P_ARP, ETH_HLEN + ARP_LEN);
    if (!f)
        return;
    uint8_t *a = f + ETH_HLEN;
    put_be16(a, 1);          /* Ethernet */
    put_be16(a + 2, ETH_P_IP);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, op);
    memcpy(a + 8, s->dev.mac, 6);
    memcpy(a + 14, s->ip, 4);
    memcpy(a + 18, tha, 6);
    memcpy(a + 24, tpa, 4);
    frame_send(s, ETH_HLEN + ARP_LEN);
}

static void arp_input(struct net *s, const uint8_t *a, uint32_t len)
{
    if (len < ARP_LEN) {
        s->c.bad++;
        return;
    }
    if (get_be16(a) != 1 || get_be16(a + 2) != ETH_P_IP || a[4] != 6 || a[5] != 4) {
        s->c.other++;
        return;
    }
    const uint16_t op = get_be16(a + 6);
    if (!s->resolved && memcmp(a + 14, s->peer_ip, 4) == 0 && (op == 1 || op == 2)) {
        memcpy(s->peer_mac, a + 8, 6); /* the sender said where it is */
        s->resolved = true;
    }
    if (op == 1 && memcmp(a + 24, s->ip, 4) == 0) {
        s->c.arp++;
        arp_send(s, 2, a + 8, a + 8, a + 14);
    } else {
        s->c.other++;
    }
}

/* An answer to the sender of frame f (IPv4 header ip): the same `proto` payload
 * [l4, +len), copied after a new IPv4 header. Returns the copy, or 0 (dropped). */
static uint8_t *reply_start(struct net *s, const uint8_t *f, const uint8_t *ip, uint8_t proto, const uint8_t *l4,
                            uint32_t len)
{
    uint8_t *r = frame_start(s, f + 6, ETH_P_IP, ETH_HLEN + IP_HLEN + len);
    if (!r)
        return 0;
    ip_header(s, r + ETH_HLEN, ip + 12, proto, len);
    memcpy(r + ETH_HLEN + IP_HLEN, l4, len);
    return r + ETH_HLEN + IP_HLEN;
}

/* An ICMP echo request (checked) from the frame f: the reply, same identifier,
 * sequence and data. */
static void icmp_input(struct net *s, const uint8_t *f, const uint8_t *ip, const uint8_t *icmp, uint32_t len)
{
    if (len < ICMP_HLEN || csum_fold(csum_add(0, icmp, len)) != 0) {
        s->c.bad++;
        return;
    }
    if (icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0) {
        s->c.other++;
        return;
    }
    uint8_t *ricmp = reply_start(s, f, ip, PROTO_ICMP, icmp, len);
    if (!ricmp)
        return;
    ricmp[0] = ICMP_ECHO_REPLY;
    put_csum(ricmp + 2, 0);
    put_csum(ricmp + 2, csum_fold(csum_add(0, ricmp, len)));
    s->c.icmp++;
    frame_send(s, ETH_HLEN + IP_HLEN + len);
}

/* Port 7: the same payload back to the sender's address and port. */
static void udp_echo(struct net *s, const uint8_t *f, const uint8_t *ip, const uint8_t *udp, uint16_t ulen)
{
    uint8_t *rudp = reply_start(s, f, ip, PROTO_UDP, udp, ulen);
    if (!rudp)
        return;
    put_be16(rudp, get_be16(udp + 2));
    put_be16(rudp + 2, get_be16(udp));
    put_csum(rudp + 6, 0);
    udp_set_csum(rudp - IP_HLEN, rudp, ulen);
    s->c.udp++;
    frame_send(s, ETH_HLEN + IP_HLEN + ulen);
}

/* One received frame: ARP and ICMP echo are answered here, and UDP to port 7 when
 * echo_udp; true with *u filled for any other UDP datagram to our address. */
static bool net_input(struct net *s, const uint8_t *f, uint32_t len, struct udp_in *u)
{
    s->c.rx++;
    if (len < ETH_HLEN) {
        s->c.bad++;
        return false;
    }
    if (memcmp(f, s->dev.mac, 6) != 0 && memcmp(f, broadcast, 6) != 0) {
        s->c.other++;
        return false;
    }
    const uint16_t type = get_be16(f + 12);
    const uint8_t *ip = f + ETH_HLEN;
    len -= ETH_HLEN;
    if (type == ETH_P_ARP) {
        arp_input(s, ip, len);
        return false;
    }
    if (type != ETH_P_IP) {
        s->c.other++;
        return false;
    }
    const uint32_t ihl = len ? (ip[0] & 15u) * 4 : 0;
    const uint32_t total = len >= IP_HLEN ? get_be16(ip + 2) : 0;
    /* The length from the header: a frame may carry padding after the packet. */
    if (len < IP_HLEN || ip[0] >> 4 != 4 || ihl < IP_HLEN || total < ihl || total > len ||
        csum_fold(csum_add(0, ip, ihl)) != 0) {
        s->c.bad++;
        return false;
    }
    if (memcmp(ip + 16, s->ip, 4) != 0 || (get_be16(ip + 6) & 0x3fff) != 0) {
        s->c.other++; /* not ours, or a fragment */
        return false;
    }
    const uint8_t *l4 = ip + ihl;
    const uint32_t l4len = total - ihl;
    if (ip[9] == PROTO_ICMP) {
        icmp_input(s, f, ip, l4, l4len);
        return false;
    }
    if (ip[9] != PROTO_UDP) {
        s->c.other++;
        return false;
    }
    const uint16_t ulen = l4len >= UDP_HLEN ? get_be16(l4 + 4) : 0;
    if (ulen < UDP_HLEN || ulen > l4len ||
        ((l4[6] | l4[7]) && csum_fold(csum_add(udp_pseudo_sum(ip, ulen), l4, ulen)) != 0)) {
        s->c.bad++;
        return false;
    }
    if (s->echo_udp && get_be16(l4 + 2) == ECHO_PORT) {
        udp_echo(s, f, ip, l4, ulen);
        return false;
    }
    u->dport = get_be16(l4 + 2);
    u->data = l4 + UDP_HLEN;
    u->len = ulen - UDP_HLEN;
    return true;
}

/* Handles every frame waiting; returns how many. */
static unsigned net_poll(struct net *s)
{
    unsigned n = 0;
    uint32_t len;
    struct udp_in u;
    for (const uint8_t *f; (f = vnet_rx(&s->dev, &len)); n++)
        if (net_input(s, f, len, &u))
            s->c.other++;
    return n;
}

static void print_counters(const char *job, const struct net *s)
{
    kprintf("%s: rx=%lu arp=%lu icmp=%lu udp=%lu other=%lu bad=%lu dropped=%lu tx=%lu\n", job, s->c.rx, s->c.arp,
            s->c.icmp, s->c.udp, s->c.other, s->c.bad + s->dev.rx_bad, s->c.dropped, s->dev.tx_frames);
}

static int device_status(const struct net *s) { return s->dev.broken ? EXIT_DEVICE_BROKEN : EXIT_OK; }

int job_net_echo(void)
{
    struct net s;
    uint64_t seconds;
    int rc = net_open(&s);
    if (rc || !arg_u64("seconds", 0, 0, 1000000, &seconds))
        return rc ? rc : EXIT_USAGE;
    s.echo_udp = true;
    print_ready("net-echo", &s);
    const uint64_t end = seconds ? rdtsc() + tsc_from_ms(seconds * 1000) : UINT64_MAX;
    for (uint64_t now = rdtsc(); now < end && device_ok(&s, now); now = rdtsc()) {
        if (!net_poll(&s)) {
            power_poll();
            cpu_relax();
        }
    }
    print_counters("net-echo", &s);
    return device_status(&s);
}

/* pps=N gbps=N.NNN over `us`, of `bytes` of UDP payload. */
static void print_rate(uint64_t frames, uint64_t bytes, uint64_t us)
{
    if (us == 0)
        us = 1;
    const uint64_t mbit = bytes * 8 / us; /* bit/us = Mbit/s */
    kprintf("pps=%lu gbps=%lu.%03lu\n", frames * 1000000 / us, mbit / 1000, mbit % 1000);
}

/* The peer's MAC (dst's), by ARP: a request every ARP_RETRY_MS, for up to `wait_s`. */
static bool resolve(struct net *s, uint64_t wait_s)
{
    const uint64_t end = rdtsc() + tsc_from_ms(wait_s * 1000);
    uint64_t retry = 0;
    for (uint64_t now = rdtsc(); !s->resolved && now < end && device_ok(s, now); now = rdtsc()) {
        if (now >= retry) {
            static const uint8_t zero[6];
            arp_send(s, 1, broadcast, zero, s->peer_ip);
            retry = now + tsc_from_ms(ARP_RETRY_MS);
        }
        if (!net_poll(s))
            cpu_relax();
    }
    return s->resolved;
}

static int bench_tx(struct net *s, uint64_t seconds)
{
    uint64_t size, sport, wait;
    uint16_t dport;
    char mac[24];
    int rc = arg_ip("dst", s->peer_ip, &dport);
    if (rc || !arg_u64("size", 1472, 0, s->dev.mtu - IP_HLEN - UDP_HLEN, &size) ||
        !arg_u64("sport", 9, 1, 65535, &sport) || !arg_u64("wait", 10, 1, 3600, &wait) ||
        !arg_str("dstmac", "", mac, sizeof mac))
        return EXIT_USAGE;
    if (mac[0] && !parse_mac(mac, s->peer_mac)) {
        kprintf("testguest: bad value for dstmac: '%s' (expected xx:xx:xx:xx:xx:xx)\n", mac);
        return EXIT_USAGE;
    }
    s->resolved = mac[0] != 0;
    print_ready("net-bench", s);
    if (!resolve(s, wait)) {
        if (!s->dev.broken)
            kprintf("net-bench: no ARP answer from %u.%u.%u.%u within %lu s\n", s->peer_ip[0], s->peer_ip[1],
                    s->peer_ip[2], s->peer_ip[3], wait);
        return s->dev.broken ? EXIT_DEVICE_BROKEN : EXIT_FAIL;
    }

    /* One frame, copied into every transmit buffer; per frame only the sequence
     * number (the first 8 payload bytes, little-endian, when size >= 8) and the UDP
     * checksum change. The IP header is fixed: ID 0 with DF (RFC 6864). */
    const uint32_t ulen = UDP_HLEN + (uint32_t)size, flen = ETH_HLEN + IP_HLEN + ulen;
    uint8_t *t = s->dev.frame; /* scratch: the reassembly area is free until the next receive */
    memcpy(t, s->peer_mac, 6);
    memcpy(t + 6, s->dev.mac, 6);
    put_be16(t + 12, ETH_P_IP);
    uint8_t *ip = t + ETH_HLEN, *udp = ip + IP_HLEN;
    s->ip_id = 0;
    ip_header(s, ip, s->peer_ip, PROTO_UDP, ulen);
    put_be16(udp, (uint16_t)sport);
    put_be16(udp + 2, dport);
    put_be16(udp + 4, (uint16_t)ulen);
    put_csum(udp + 6, 0);
    for (uint32_t i = 0; i < size; i++)
        udp[UDP_HLEN + i] = i < 8 ? 0 : (uint8_t)(i * 7 + 1);
    const uint64_t base_sum = csum_add(udp_pseudo_sum(ip, (uint16_t)ulen), udp, ulen);
    udp_set_csum(ip, udp, (uint16_t)ulen);
    vnet_tx_prefill(&s->dev, t, flen);

    uint64_t frames = 0, full = 0;
    bool was_full = false;
    const uint64_t start = rdtsc(), end = start + tsc_from_ms(seconds * 1000);
    for (uint64_t now = start; now < end && device_ok(s, now); now = rdtsc()) {
        uint8_t *f = vnet_tx_buf(&s->dev);
        if (!f) {
            full += !was_full;
            was_full = true;
            vnet_tx_kick(&s->dev);
            net_poll(s); /* ARP from the peer, while the device catches up */
            cpu_relax();
            continue;
        }
        was_full = false;
        uint8_t *fudp = f + ETH_HLEN + IP_HLEN;
        if (size >= 8) {
            memcpy(fudp + UDP_HLEN, &frames, 8);
            uint16_t c = csum_fold(csum_add(base_sum, &frames, 8));
            put_csum(fudp + 6, c ? c : 0xffff);
        }
        vnet_tx_send(&s->dev, flen);
        if ((++frames & 31) == 0)
            vnet_tx_kick(&s->dev);
    }
    /* The last frames: sent once the device has used them. */
    vnet_tx_kick(&s->dev);
    const uint64_t drain = rdtsc() + tsc_from_ms(DRAIN_MS);
    while (vnet_tx_reclaim(&s->dev) && !s->dev.broken && rdtsc() < drain)
        cpu_relax();
    const uint64_t us = us_from_tsc(rdtsc() - start), sent = frames - vnet_tx_reclaim(&s->dev);
    print_rate(sent, sent * size, us);
    const uint32_t wire = flen < VNET_MIN_FRAME ? VNET_MIN_FRAME : flen;
    kprintf("net-bench: mode=tx frames=%lu bytes=%lu frame_bytes=%lu size=%lu us=%lu ring_full=%lu unsent=%lu\n",
            sent, sent * size, sent * wire, size, us, full, frames - sent);
    print_counters("net-bench", s);
    return device_status(s);
}

static int bench_rx(struct net *s, uint64_t seconds)
{
    uint64_t port, wait, seq;
    if (!arg_u64("port", 9, 1, 65535, &port) || !arg_u64("wait", 60, 1, 3600, &wait) ||
        !arg_u64("seq", 0, 0, 1, &seq))
        return EXIT_USAGE;
    print_ready("net-bench", s);
    uint64_t frames = 0, bytes = 0, first_len = 0, first = 0, last = 0, end = rdtsc() + tsc_from_ms(wait * 1000);
    uint64_t seq_min = UINT64_MAX, seq_max = 0;
    for (uint64_t now = rdtsc(); now < end && device_ok(s, now); now = rdtsc()) {
        uint32_t len;
        struct udp_in u;
        const uint8_t *f = vnet_rx(&s->dev, &len);
        if (!f) {
            cpu_relax();
            continue;
        }
        if (!net_input(s, f, len, &u))
            continue;
        if (u.dport != port) {
            s->c.other++;
            continue;
        }
        if (!frames++)
            first = now, first_len = u.len, end = now + tsc_from_ms(seconds * 1000);
        last = now;
        bytes += u.len;
        if (seq && u.len >= 8) {
            uint64_t v;
            memcpy(&v, u.data, 8);
            seq_min = v < seq_min ? v : seq_min;
            seq_max = v > seq_max ? v : seq_max;
        }
    }
    if (s->dev.broken)
        return EXIT_DEVICE_BROKEN;
    if (!frames) {
        kprintf("net-bench: no UDP datagram to port %lu within %lu s\n", port, wait);
        print_counters("net-bench", s);
        return EXIT_FAIL;
    }
    /* The rate over the span from the first datagram to the last: the ones after the first. */
    const uint64_t us = us_from_tsc(last - first);
    print_rate(frames - 1, bytes - first_len, us);
    uint64_t lost = 0;
    if (seq && seq_max >= seq_min && seq_max - seq_min + 1 > frames)
        lost = seq_max - seq_min + 1 - frames;
    kprintf("net-bench: mode=rx frames=%lu bytes=%lu us=%lu lost=%lu\n", frames, bytes, us, lost);
    print_counters("net-bench", s);
    return EXIT_OK;
}

int job_net_bench(void)
{
    struct net s;
    char mode[8];
    uint64_t seconds;
    int rc = net_open(&s);
    if (rc)
        return rc;
    if (!arg_str("mode", "", mode, sizeof mode) || !arg_u64("seconds", 5, 1, 3600, &seconds))
        return EXIT_USAGE;
    if (strcmp(mode, "tx") == 0)
        return bench_tx(&s, seconds);
    if (strcmp(mode, "rx") == 0)
        return bench_rx(&s, seconds);
    kprintf("net-bench: mode must be tx or rx, not '%s'\n", mode);
    return EXIT_USAGE;
}
