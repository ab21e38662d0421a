/* TSC frequency (and the LAPIC timer clock), in order of preference:
 *   1. CPUID 0x40000010 (EAX = TSC kHz, EBX = LAPIC bus kHz) when the
 *      hypervisor leaf 0x40000000 says it exists (Kiln; QEMU with invtsc),
 *   2. CPUID 0x15 (crystal ratio), 3. CPUID 0x16 (base MHz),
 *   4. PIT channel 2 in one-shot mode, gated through port 0x61,
 *   5. the LAPIC timer, whose clock is 1 GHz under KVM and QEMU.
 * The LAPIC bus clock is 1 GHz unless leaf 0x40000010 gives one. */
#include "kernel/bootinfo.h"
#include "kernel/kernel.h"
#include "lib/arch.h"

#define PIT_HZ 1193182
#define CAL_MS 50

static bool plausible(uint64_t khz) { return khz >= 100000 && khz <= 100000000; }

static uint64_t pit_calibrate(void)
{
    uint8_t saved = inb(0x61);
    outb(0x61, (saved & ~0x02) | 0x01);          /* gate 2 on, speaker off */
    outb(0x43, 0xb0);                            /* ch 2, lo/hi, mode 0, binary */
    uint32_t count = PIT_HZ * CAL_MS / 1000;
    outb(0x42, count & 0xff);
    outb(0x42, count >> 8);
    uint64_t t0 = rdtsc();
    uint64_t khz = 0;
    if (!(inb(0x61) & 0x20)) {                   /* OUT2 low while counting */
        for (uint32_t i = 0; i < 10000000; i++) {
            if (inb(0x61) & 0x20) {
                khz = (rdtsc() - t0) / CAL_MS;
                break;
            }
        }
    }
    outb(0x61, saved);
    return khz;
}

static uint64_t lapic_calibrate(void)
{
    lapic_write(0x3e0, 0xb);                     /* divide by 1 */
    lapic_write(0x320, 0x10000 | 32);            /* masked, one-shot */
    lapic_write(0x380, 0xffffffff);
    uint64_t t0 = rdtsc();
    uint32_t c0 = lapic_read(0x390);
    uint64_t want = boot.lapic_bus_khz * CAL_MS;
    uint32_t c1 = c0;
    for (uint32_t i = 0; i < 10000000 && c0 - c1 < want; i++)
        c1 = lapic_read(0x390);
    uint64_t t1 = rdtsc();
    lapic_write(0x380, 0);
    if (c0 == c1)
        return 0;
    return (t1 - t0) * boot.lapic_bus_khz / (c0 - c1);
}

void tsc_init(void)
{
    uint32_t r[4];
    boot.lapic_bus_khz = 1000000;
    if (boot.hv_max_leaf >= 0x40000010) {
        cpuid(0x40000010, 0, r);
        if (r[1])
            boot.lapic_bus_khz = r[1];
        if (plausible(r[0])) {
            boot.tsc_khz = r[0];
            boot.tsc_source = "cpuid-0x40000010";
            return;
        }
    }
    cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    if (max_leaf >= 0x15) {
        cpuid(0x15, 0, r);
        if (r[0] && r[1] && r[2] && plausible((uint64_t)r[2] * r[1] / r[0] / 1000)) {
            boot.tsc_khz = (uint64_t)r[2] * r[1] / r[0] / 1000;
            boot.tsc_source = "cpuid-0x15";
            return;
        }
    }
    if (max_leaf >= 0x16) {
        cpuid(0x16, 0, r);
        if (plausible((uint64_t)(r[0] & 0xffff) * 1000)) {
            boot.tsc_khz = (uint64_t)(r[0] & 0xffff) * 1000;
            boot.tsc_source = "cpuid-0x16";
            return;
        }
    }
    uint64_t khz = pit_calibrate();
    if (plausible(khz)) {
        boot.tsc_khz = khz;
        boot.tsc_source = "pit";
        return;
    }
    khz = lapic_calibrate();
    if (plausible(khz)) {
        boot.tsc_khz = khz;
        boot.tsc_source = "lapic";
        return;
    }
    boot.tsc_khz = 1000000;                      /* a guess beats dividing by 0 */
    boot.tsc_source = "guess-1GHz";
}
