/* The "guest syscall" ABI between ring-3 jobs and ring-0 services.
 *
 * kvm_pvm cannot run `int n` or `syscall` here, so ring 3 executes `ud2`:
 * the resulting #UD reaches the ring-0 handler, which checks for the 0F 0B
 * bytes at the faulting RIP, runs the service named in RAX with arguments in
 * RDI, RSI, RDX, puts the result in RAX and resumes after the ud2. */
#pragma once

#define SYS_HALT        0   /* cli; hlt forever (after a failed exit) */
#define SYS_TIMER       1   /* rdi = Hz (0 = stop); returns the initial count */
#define SYS_START_APS   2   /* INIT-SIPI-SIPI to all other CPUs; returns 0 */
#define SYS_CPUID       3   /* rdi = leaf, rsi = subleaf, rdx = uint32_t[4] out */
#define SYS_TRIPLE_FAULT 4  /* load an empty IDT, then fault: the CPU shuts down */
#define SYS_MAP_MMIO    5   /* rdi = base, rsi = size, below 4 GiB: map it uncached,
                               user; returns 0 or SYS_ENOSYS (cannot) */

#define SYS_SLEEP       6   /* rdi = ms: halt (sti; hlt) until that much TSC time has
                               passed, woken by the LAPIC timer at 100 Hz; stops the
                               timer afterwards. The vCPU costs the host no CPU. */

#define SYS_ENOSYS      ((uint64_t)-1)
