/* The disk jobs, over the ring-3 virtio-blk driver (virtio/virtio_blk.c).
 * disk=I picks the I-th virtio-blk device (default 0), queue=Q the queue the driver
 * uses (default 0); sectors are 512 bytes.
 *
 *   blk-info                      capacity, features and read-only flag of every disk
 *   blk-crc sector=S count=C      prints crc32=xxxxxxxx (zlib's CRC-32) of those sectors
 *   blk-write sector=S count=C byte=B
 *                                 writes them full of B, flushes, reads back, compares
 *   blk-id                        prints serial=... (VIRTIO_BLK_T_GET_ID)
 *   blk-zero sector=S count=C unmap=0|1
 *                                 VIRTIO_BLK_T_WRITE_ZEROES over those sectors, then reads
 *                                 them back: all zeros -> 0
 *   blk-discard sector=S count=C  VIRTIO_BLK_T_DISCARD over those sectors
 *   blk-bench pattern=randread|randwrite|read|write bs=BYTES qd=N seconds=S
 *                                 prints iops=N mbps=N (MB/s, 10^6 bytes)
 * Exit: 0 ok, 1 data mismatch, 2 bad arguments, 4 the device returned an error
 * status, 5 no such disk (or it failed to initialise), 6 a request never
 * completed or the device needs a reset. */
#include "jobs/jobs.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "lib/rand.h"
#include "lib/string.h"
#include "user/user.h"
#include "virtio/virtio_blk.h"

#define CHUNK_BYTES (256 * 1024) /* per request in blk-crc / blk-write */

static uint32_t crc_table[256];

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static int open_disk(struct vblk *d)
{
    uint64_t index, queue;
    if (!arg_u64("disk", 0, 0, 63, &index) || !arg_u64("queue", 0, 0, 15, &queue))
        return EXIT_USAGE;
    return vblk_open_queue((unsigned)index, (uint16_t)queue, d) ? EXIT_OK : EXIT_NODEV;
}

/* sector= and count= of a range that must lie on the disk. */
static int range_args(const struct vblk *d, uint64_t *sector, uint64_t *count)
{
    if (!arg_u64("sector", 0, 0, UINT64_MAX / VBLK_SECTOR, sector) ||
        !arg_u64("count", 1, 1, UINT64_MAX / VBLK_SECTOR, count))
        return EXIT_USAGE;
    if (*sector > d->capacity || *count > d->capacity - *sector) {
        kprintf("blk: sectors %lu+%lu are beyond the disk's %lu sectors\n", *sector, *count, d->capacity);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static int io_failed(const char *what, uint64_t sector, uint8_t st)
{
    kprintf("blk: %s at sector %lu: device status %u (%s)\n", what, sector, st, vblk_status_name(st));
    return st == VBLK_S_TIMEOUT || st == VBLK_S_BROKEN ? EXIT_DEVICE_BROKEN : EXIT_IOERR;
}

int job_blk_info(void)
{
    /* A disk that fails to initialise (vblk_open says why) does not hide the next. */
    unsigned n = vblk_count(), ok = 0;
    for (unsigned i = 0; i < n; i++) {
        struct vblk d;
        if (!vblk_open(i, &d))
            continue;
        kprintf("blk-info: disk=%u base=0x%lx sectors=%lu blk_size=%u features=0x%lx read_only=%u event_idx=%u "
                "flush=%u queue=%u queue_size=%u num_queues=%u\n",
                i, d.base, d.capacity, d.blk_size, d.features, d.read_only, d.q.event_idx,
                (d.features & VBLK_F_FLUSH) != 0, d.q.index, d.q.qsize, d.num_queues);
        ok++;
    }
    kprintf("blk-info: %u disk(s)\n", ok);
    return ok && ok == n ? EXIT_OK : EXIT_NODEV;
}

int job_blk_crc(void)
{
    struct vblk d;
    uint64_t sector, count;
    int rc = open_disk(&d);
    if (rc || (rc = range_args(&d, &sector, &count)))
        return rc;
    uint8_t *buf = dma_alloc(CHUNK_BYTES, 4096);
    if (!buf)
        return EXIT_USAGE;
    uint32_t crc = 0;
    for (uint64_t done = 0; done < count;) {
        uint64_t n = count - done < CHUNK_BYTES / VBLK_SECTOR ? count - done : CHUNK_BYTES / VBLK_SECTOR;
        uint8_t st = vblk_io(&d, VBLK_T_IN, sector + done, buf, (uint32_t)(n * VBLK_SECTOR));
        if (st != VBLK_S_OK)
            return io_failed("read", sector + done, st);
        crc = crc32_update(crc, buf, n * VBLK_SECTOR);
        done += n;
    }
    kprintf("crc32=%08x\n", crc);
    return EXIT_OK;
}

int job_blk_write(void)
{
    struct vblk d;
    uint64_t sector, count, byte;
    int rc = open_disk(&d);
    if (rc || (rc = range_args(&d, &sector, &count)))
        return rc;
    if (!arg_u64("byte", 0xa5, 0, 255, &byte))
        return EXIT_USAGE;
    uint8_t *buf = dma_alloc(CHUNK_BYTES, 4096);
    if (!buf)
        return EXIT_USAGE;
    for (uint64_t done = 0; done < count;) {
        uint64_t n = count - done < CHUNK_BYTES / VBLK_SECTOR ? count - done : CHUNK_BYTES / VBLK_SECTOR;
        memset(buf, (int)byte, n * VBLK_SECTOR);
        uint8_t st = vblk_io(&d, VBLK_T_OUT, sector + done, buf, (uint32_t)(n * VBLK_SECTOR));
        if (st != VBLK_S_OK)
            return io_failed("write", sector + done, st);
        done += n;
    }
    /* A device without VIRTIO_BLK_F_FLUSH writes through: nothing to flush, and
     * it may answer T_FLUSH with UNSUPP. */
    uint8_t st;
    if (d.features & VBLK_F_FLUSH) {
        st = vblk_io(&d, VBLK_T_FLUSH, 0, 0, 0);
        if (st != VBLK_S_OK)
            return io_failed("flush", 0, st);
    }
    for (uint64_t done = 0; done < count;) {
        uint64_t n = count - done < CHUNK_BYTES / VBLK_SECTOR ? count - done : CHUNK_BYTES / VBLK_SECTOR;
        memset(buf, (int)(byte ^ 0xff), n * VBLK_SECTOR);
        st = vblk_io(&d, VBLK_T_IN, sector + done, buf, (uint32_t)(n * VBLK_SECTOR));
        if (st != VBLK_S_OK)
            return io_failed("read back", sector + done, st);
        for (uint64_t i = 0; i < n * VBLK_SECTOR; i++)
            if (buf[i] != byte) {
                kprintf("blk-write: byte %lu of sector %lu reads 0x%02x, wrote 0x%02lx\n", i % VBLK_SECTOR,
                        sector + done + i / VBLK_SECTOR, buf[i], byte);
                return EXIT_FAIL;
            }
        done += n;
    }
    kprintf("blk-write: wrote, flushed and read back %lu sectors at %lu\n", count, sector);
    return EXIT_OK;
}

int job_blk_id(void)
{
    struct vblk d;
    int rc = open_disk(&d);
    if (rc)
        return rc;
    char *id = dma_alloc(4096, 4096);
    if (!id)
        return EXIT_USAGE;
    uint8_t st = vblk_io(&d, VBLK_T_GET_ID, 0, id, 20);
    if (st != VBLK_S_OK)
        return io_failed("get-id", 0, st);
    id[20] = 0;
    kprintf("serial=%s\n", id);
    return EXIT_OK;
}

int job_blk_bench(void)
{
    struct vblk d;
    char pattern[16];
    uint64_t bs, qd, seconds;
    int rc = open_disk(&d);
    if (rc)
        return rc;
    if (!arg_str("pattern", "randread", pattern, sizeof pattern) || !arg_u64("bs", 4096, 512, 1 << 20, &bs) ||
        !arg_u64("qd", 1, 1, d.slots, &qd) || !arg_u64("seconds", 5, 1, 3600, &seconds))
        return EXIT_USAGE;
    bool random = strcmp(pattern, "randread") == 0 || strcmp(pattern, "randwrite") == 0;
    bool write = strcmp(pattern, "randwrite") == 0 || strcmp(pattern, "write") == 0;
    if (!random && !write && strcmp(pattern, "read") != 0) {
        kprintf("blk-bench: pattern must be randread, randwrite, read or write, not '%s'\n", pattern);
        return EXIT_USAGE;
    }
    if (bs % VBLK_SECTOR || bs / VBLK_SECTOR > d.capacity) {
        kprintf("blk-bench: bs=%lu must be a multiple of 512 and fit the disk\n", bs);
        return EXIT_USAGE;
    }
    if (write && d.read_only) {
        kprintf("blk-bench: disk is read-only\n");
        return EXIT_USAGE;
    }
    /* Large buffer sets start on a 2 MiB boundary, as a guest kernel's allocator would
     * hand out large buffers: the host can then back them with huge pages. */
    uint8_t *bufs = dma_alloc(bs * qd, bs * qd >= MiB(1) ? MiB(2) : 4096);
    if (!bufs) {
        kprintf("blk-bench: not enough guest memory for %lu x %lu bytes\n", qd, bs);
        return EXIT_USAGE;
    }
    for (uint64_t i = 0; i < bs * qd; i++)
        bufs[i] = (uint8_t)(i * 7 + 1);
    const uint64_t blocks = d.capacity / (bs / VBLK_SECTOR);
    uint64_t rng = 0x9e3779b97f4a7c15ULL, next_seq = 0, done = 0;
    const uint32_t type = write ? VBLK_T_OUT : VBLK_T_IN;
    const uint64_t start = rdtsc(), end = start + tsc_from_ms(seconds * 1000);
    unsigned inflight = 0;
    uint64_t now = start;
    for (unsigned s = 0; s < qd; s++) {
        uint64_t blk = random ? xorshift64(&rng) % blocks : next_seq++ % blocks;
        vblk_submit(&d, s, type, blk * (bs / VBLK_SECTOR), bufs + s * bs, (uint32_t)bs);
        inflight++;
    }
    vblk_kick(&d);
    while (inflight) {
        uint8_t st;
        int slot = vblk_wait(&d, &st);
        if (slot < 0)
            return EXIT_DEVICE_BROKEN;
        if (st != VBLK_S_OK)
            return io_failed(write ? "write" : "read", 0, st);
        inflight--;
        done++;
        if ((done & 15) == 0 || inflight == 0)
            now = rdtsc();
        if (now < end) {
            uint64_t blk = random ? xorshift64(&rng) % blocks : next_seq++ % blocks;
            vblk_submit(&d, (unsigned)slot, type, blk * (bs / VBLK_SECTOR), bufs + (unsigned)slot * bs, (uint32_t)bs);
            inflight++;
            /* No kick here: vblk_wait() kicks once the used ring is empty, so
             * refills after a burst of completions share one doorbell. */
        }
    }
    uint64_t us = us_from_tsc(rdtsc() - start);
    if (us == 0)
        us = 1;
    kprintf("iops=%lu mbps=%lu\n", done * 1000000 / us, done * bs / us);
    return EXIT_OK;
}

/* WRITE_ZEROES (blk-zero) or DISCARD (blk-discard) over sector=S count=C: one range. */
static int zero_or_discard(bool zero)
{
    struct vblk d;
    uint64_t sector, count, unmap = 0;
    int rc = open_disk(&d);
    if (rc || (rc = range_args(&d, &sector, &count)))
        return rc;
    if (zero && !arg_u64("unmap", 0, 0, 1, &unmap))
        return EXIT_USAGE;
    if (count > 0xffffffffu) {
        kprintf("blk: count=%lu does not fit one range\n", count);
        return EXIT_USAGE;
    }
    const unsigned feature = zero ? VBLK_F_WRITE_ZEROES : VBLK_F_DISCARD;
    if (!(d.features & (1ULL << feature)))
        kprintf("blk: the device does not offer %s; sending it anyway\n", zero ? "WRITE_ZEROES" : "DISCARD");
    struct vblk_range *r = dma_alloc(4096, 4096);
    uint8_t *buf = dma_alloc(CHUNK_BYTES, 4096);
    if (!r || !buf)
        return EXIT_USAGE;
    r->sector = sector;
    r->num_sectors = (uint32_t)count;
    r->flags = unmap ? VBLK_WRITE_ZEROES_UNMAP : 0;
    uint8_t st = vblk_io(&d, zero ? VBLK_T_WRITE_ZEROES : VBLK_T_DISCARD, 0, r, sizeof *r);
    if (st != VBLK_S_OK)
        return io_failed(zero ? "write-zeroes" : "discard", sector, st);
    if (!zero) {
        kprintf("blk-discard: discarded %lu sectors at %lu\n", count, sector);
        return EXIT_OK;
    }
    for (uint64_t done = 0; done < count;) {
        uint64_t n = count - done < CHUNK_BYTES / VBLK_SECTOR ? count - done : CHUNK_BYTES / VBLK_SECTOR;
        memset(buf, 0x5a, n * VBLK_SECTOR);
        st = vblk_io(&d, VBLK_T_IN, sector + done, buf, (uint32_t)(n * VBLK_SECTOR));
        if (st != VBLK_S_OK)
            return io_failed("read back", sector + done, st);
        for (uint64_t i = 0; i < n * VBLK_SECTOR; i++)
            if (buf[i]) {
                kprintf("blk-zero: byte %lu of sector %lu reads 0x%02x after write-zeroes\n", i % VBLK_SECTOR,
                        sector + done + i / VBLK_SECTOR, buf[i]);
                return EXIT_FAIL;
            }
        done += n;
    }
    kprintf("blk-zero: zeroed and read back %lu sectors at %lu (unmap=%lu)\n", count, sector, unmap);
    return EXIT_OK;
}

int job_blk_zero(void) { return zero_or_discard(true); }
int job_blk_discard(void) { return zero_or_discard(false); }
