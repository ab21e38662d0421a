/* Ring-3 wrappers for the ring-0 services (ABI in kernel/syscall_abi.h). */
#pragma once
#include "kernel/syscall_abi.h"
#include "lib/types.h"

static inline uint64_t sys_call3(uint64_t nr, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t ret;
    __asm__ volatile("ud2" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "memory");
    return ret;
}

static inline NORETURN void sys_halt(void)
{
    sys_call3(SYS_HALT, 0, 0, 0);
    __builtin_unreachable();
}
static inline uint64_t sys_timer(uint64_t hz) { return sys_call3(SYS_TIMER, hz, 0, 0); }
/* Sleeps `ms` with the vCPU halted (no host CPU used); stops the LAPIC timer. */
static inline void sys_sleep(uint64_t ms) { sys_call3(SYS_SLEEP, ms, 0, 0); }
static inline uint64_t sys_start_aps(void) { return sys_call3(SYS_START_APS, 0, 0, 0); }
static inline void sys_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    sys_call3(SYS_CPUID, leaf, sub, (uint64_t)out);
}
/* Maps a device window below 4 GiB (uncached, user) if the boot map left it out. */
static inline bool sys_map_mmio(uint64_t base, uint64_t size)
{
    return sys_call3(SYS_MAP_MMIO, base, size, 0) == 0;
}
static inline NORETURN void sys_triple_fault(void)
{
    sys_call3(SYS_TRIPLE_FAULT, 0, 0, 0);
    __builtin_unreachable();
}
