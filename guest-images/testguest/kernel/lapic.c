/* Local APIC (xAPIC, MMIO) and the legacy PIC.
 *
 * The PIC is masked so nothing a BIOS left running (the PIT at IRQ0, say)
 * arrives at a vector the guest uses for exceptions. The LAPIC timer is the
 * only interrupt source the guest enables; its handler is timer_stub. */
#include "kernel/bootinfo.h"
#include "kernel/kernel.h"
#include "lib/arch.h"
#include "lib/string.h"

#define MSR_APIC_BASE 0x1b
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0

#define LVT_MASKED 0x10000
#define LVT_PERIODIC 0x20000
#define TIMER_VECTOR 32
#define SPURIOUS_VECTOR 0xff

uint32_t lapic_read(uint32_t reg) { return mmio_read32(boot.lapic_base + reg); }
void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(boot.lapic_base + reg, v); }

void pic_disable(void)
{
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

void lapic_init(void)
{
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if (!(base & (1 << 11)))
        wrmsr(MSR_APIC_BASE, base | (1 << 11));   /* globally enabled, xAPIC mode */
    boot.lapic_base = base & 0xffffff000ULL;
    lapic_eoi_reg = boot.lapic_base + LAPIC_EOI;
    lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
    lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
    lapic_write(LAPIC_LVT_ERROR, LVT_MASKED);
}

/* Periodic at `hz` with divide-by-16, or stopped for hz == 0. */
uint64_t lapic_timer_set(uint64_t hz)
{
    if (hz == 0) {
        lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
        lapic_write(LAPIC_TIMER_INIT, 0);
        return 0;
    }
    uint64_t count = boot.lapic_bus_khz * 1000 / 16 / hz;
    if (count == 0)
        count = 1;
    if (count > 0xffffffff)
        count = 0xffffffff;
    lapic_write(LAPIC_TIMER_DIV, 0x3);          /* divide by 16 */
    lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, (uint32_t)count);
    return count;
}

/* Halts until `ms` of TSC time have passed. Called from the #UD service path with
 * interrupts off: `sti; hlt` opens them only while halted, so the timer's handler
 * (timer_stub) runs nested on this stack and returns here. */
uint64_t lapic_sleep_ms(uint64_t ms)
{
    uint64_t end = rdtsc() + ms * boot.tsc_khz;
    lapic_timer_set(100);
    while (rdtsc() < end)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    lapic_timer_set(0);
    return 0;
}

void delay_us_ring0(uint64_t us)
{
    uint64_t end = rdtsc() + us * boot.tsc_khz / 1000;
    while (rdtsc() < end)
        ;
}

static void send_ipi_all_but_self(uint32_t icr_lo)
{
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, 0xc0000 | icr_lo);   /* shorthand: all excluding self */
    for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & (1 << 12)); i++)
        ;                                           /* delivery status */
}

uint64_t smp_start_aps(void)
{
    size_t size = (size_t)(ap_trampoline_end - ap_trampoline_start);
    memcpy((void *)AP_TRAMPOLINE_BASE, ap_trampoline_start, size);
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    *(volatile uint32_t *)(AP_TRAMPOLINE_BASE + (ap_cr3 - ap_trampoline_start)) = (uint32_t)cr3;

    send_ipi_all_but_self(0x4500);                  /* INIT, level assert */
    delay_us_ring0(10000);
    for (int i = 0; i < 2; i++) {
        send_ipi_all_but_self(0x4600 | (AP_TRAMPOLINE_BASE >> 12));   /* SIPI */
        delay_us_ring0(200);
    }
    return 0;
}
