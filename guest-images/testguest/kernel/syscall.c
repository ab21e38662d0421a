/* Ring-0 services for ring 3, reached through `ud2` (see syscall_abi.h). */
#include "kernel/kernel.h"
#include "kernel/syscall_abi.h"
#include "lib/arch.h"

bool syscall_dispatch(struct trap_frame *f)
{
    const uint8_t *p = (const uint8_t *)f->rip;
    if (p[0] != 0x0f || p[1] != 0x0b)
        return false;                   /* a real #UD */
    switch (f->rax) {
    case SYS_HALT:
        halt_forever();
    case SYS_TIMER:
        f->rax = lapic_timer_set(f->rdi);
        break;
    case SYS_SLEEP:
        f->rax = lapic_sleep_ms(f->rdi);
        break;
    case SYS_START_APS:
        f->rax = smp_start_aps();
        break;
    case SYS_CPUID: {
        uint32_t r[4];
        cpuid((uint32_t)f->rdi, (uint32_t)f->rsi, r);
        uint32_t *out = (uint32_t *)f->rdx;
        for (int i = 0; i < 4; i++)
            out[i] = r[i];
        f->rax = 0;
        break;
    }
    case SYS_MAP_MMIO:
        f->rax = paging_map_mmio(f->rdi, f->rsi);
        break;
    case SYS_TRIPLE_FAULT: {
        /* With a zero-limit IDT the #UD cannot be delivered (#GP), nor can that
         * (#DF), nor that: the CPU shuts down, which KVM reports as
         * KVM_EXIT_SHUTDOWN. The same on hardware as under emulation. */
        static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) empty = { 0, 0 };
        __asm__ volatile("cli; lidt %0; ud2" : : "m"(empty));
        halt_forever();
    }
    default:
        f->rax = SYS_ENOSYS;
    }
    f->rip += 2;
    return true;
}
