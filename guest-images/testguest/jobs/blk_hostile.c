/* job=blk-hostile disk=I: a guest that writes nonsense into its virtqueue, and what a
 * device must do about it (virtio 1.2, 2.7.5.1 and 5.2.6.1): answer a malformed
 * request with an error status, or, for a ring it cannot trust any more, stop the
 * queue and set DEVICE_NEEDS_RESET; never hang, never touch memory it was not given,
 * never take the VMM down. Each case prints "blk-hostile: CASE: ok|FAIL (...)"; after
 * the last one the driver resets the device, sets it up again and reads sector 0.
 * Exit 0 when every case behaved, 1 otherwise, 5 without a disk. */
#include "jobs/jobs.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/user.h"
#include "virtio/virtio_blk.h"

static int failures;

static void report(const char *name, bool ok, const char *detail, int value)
{
    kprintf("blk-hostile: %s: %s (%s %d)\n", name, ok ? "ok" : "FAIL", detail, value);
    if (!ok)
        failures++;
}

#define UNTOUCHED 0xff /* vblk_submit's status byte before the device writes one */
#define NO_COMPLETION (-1)

/* Slot 0's chain with `tweak` applied to its descriptors, published, then waited for:
 * the status byte as the device left it, or NO_COMPLETION. */
static int run_case(struct vblk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len,
                        void (*tweak)(struct vblk *, void *), void *arg)
{
    vblk_submit(d, 0, type, sector, buf, len);
    if (tweak) {
        d->q.avail_idx--; /* take the entry back: the tweak edits the chain first */
        tweak(d, arg);
        vq_publish(&d->q, 0);
    }
    uint8_t st;
    vblk_kick(d);
    if (vblk_wait(d, &st) < 0)
        return NO_COMPLETION;
    return d->status[0];
}

static void data_addr(struct vblk *d, void *addr) { d->q.desc[1].addr = (uint64_t)addr; }
static void data_len(struct vblk *d, void *len) { d->q.desc[1].len = *(uint32_t *)len; }
static void loop_chain(struct vblk *d, void *unused)
{
    (void)unused;
    d->q.desc[1].next = 0; /* data -> header -> data -> ... */
}
static void next_out_of_range(struct vblk *d, void *unused)
{
    (void)unused;
    d->q.desc[1].next = (uint16_t)(d->q.qsize + 7);
}
static void short_header(struct vblk *d, void *unused)
{
    (void)unused;
    d->q.desc[0].len = 4;
}
static void status_readonly(struct vblk *d, void *unused)
{
    (void)unused;
    d->q.desc[2].flags = 0; /* the status byte the device may not write */
}

int job_blk_hostile(void)
{
    struct vblk d;
    uint64_t index;
    if (!arg_u64("disk", 0, 0, 63, &index))
        return EXIT_USAGE;
    if (!vblk_open((unsigned)index, &d))
        return EXIT_NODEV;
    uint8_t *buf = dma_alloc(8192, 4096);
    if (!buf)
        return EXIT_USAGE;
    int st;

    st = run_case(&d, VBLK_T_IN, 0, buf, 4096, data_addr, (void *)0x7ff000000000ULL);
    report("data buffer outside guest RAM", st == VBLK_S_IOERR, "status", st);
    uint32_t huge = 0xfffff000u;
    st = run_case(&d, VBLK_T_IN, 0, buf, 4096, data_len, &huge);
    report("data length 4 GiB", st == VBLK_S_IOERR, "status", st);
    st = run_case(&d, VBLK_T_IN, 0, buf, 4096, loop_chain, 0);
    /* No status byte can be trusted in a chain that loops: the request must come back
     * (used ring), not succeed. */
    report("descriptor chain that loops", st != NO_COMPLETION && st != VBLK_S_OK, "status", st);
    st = run_case(&d, VBLK_T_IN, 0, buf, 4096, next_out_of_range, 0);
    report("next index beyond the queue", st != NO_COMPLETION && st != VBLK_S_OK, "status", st);
    st = run_case(&d, VBLK_T_IN, 0, buf, 4096, short_header, 0);
    report("request header of 4 bytes", st == VBLK_S_IOERR, "status", st);
    st = run_case(&d, VBLK_T_IN, 0, buf, 4096, status_readonly, 0);
    report("status byte not device-writable", st == UNTOUCHED, "status byte left at", st);
    st = run_case(&d, 0x99, 0, buf, 4096, 0, 0);
    report("unknown request type 0x99", st == VBLK_S_UNSUPP, "status", st);
    st = run_case(&d, VBLK_T_IN, d.capacity, buf, 4096, 0, 0);
    report("read past the end of the disk", st == VBLK_S_IOERR, "status", st);
    st = run_case(&d, VBLK_T_IN, 0, buf, 1000, 0, 0);
    report("read of 1000 bytes (not whole sectors)", st == VBLK_S_IOERR, "status", st);
    st = run_case(&d, VBLK_T_OUT, 0, buf, 4096, status_readonly, 0);
    report("write with an unwritable status", st == UNTOUCHED, "status byte left at", st);

    /* A ring that cannot be trusted: the available index runs ahead by more than the
     * queue size. The device must give up on the queue and ask for a reset. */
    d.q.avail[1] = (uint16_t)(d.q.avail_idx + d.q.qsize + 5);
    vq_notify(&d.q);
    uint32_t dev = 0;
    for (uint64_t end = rdtsc() + tsc_from_ms(2000); rdtsc() < end;) {
        dev = vmmio_status(d.base);
        if (dev & VIRTIO_S_NEEDS_RESET)
            break;
    }
    report("available index far ahead of the ring", dev & VIRTIO_S_NEEDS_RESET, "device status", (int)dev);

    /* And the device recovers after a reset. */
    struct vblk again;
    bool ok = vblk_open((unsigned)index, &again);
    st = ok ? vblk_io(&again, VBLK_T_IN, 0, buf, 4096) : NO_COMPLETION;
    report("reset, set up again, read sector 0", st == VBLK_S_OK, "status", st);

    kprintf("blk-hostile: %d failure(s)\n", failures);
    return failures ? EXIT_FAIL : EXIT_OK;
}
