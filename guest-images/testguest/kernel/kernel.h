/* Ring-0 internals: the setup steps called by kmain and the services the
 * #UD "guest syscall" handler dispatches to. */
#pragma once
#include "boot/layout.h"
#include "lib/types.h"

struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, err;
    uint64_t rip, cs, rflags, rsp, ss;   /* pushed by the CPU */
};

/* entry.S / traps.S */
extern char kstack_top[], ustack_top[];
extern uint64_t pt_pool[PT_POOL_PAGES][512];
extern const uint64_t trap_stub_table[32];
extern char timer_stub[], spurious_stub[];
extern volatile uint64_t timer_ticks;          /* bumped by timer_stub */
extern uint64_t lapic_eoi_reg;                 /* address timer_stub writes 0 to */
extern volatile uint32_t ap_checkin_count;     /* bumped by each AP */
extern char ap_trampoline_start[], ap_trampoline_end[], ap_cr3[];
NORETURN void enter_user(void (*entry)(void), void *stack);

/* Setup steps, in the order kmain runs them. */
void cpu_tables_init(void);          /* cpu.c: GDT TSS, IDT */
void bootinfo_parse(uint32_t kind, uint64_t info);   /* bootinfo.c */
void paging_init(void);              /* paging.c */
void cpuinfo_init(void);             /* cpuinfo.c */
void pic_disable(void);              /* lapic.c */
void lapic_init(void);
void tsc_init(void);                 /* tsc.c */

/* Services. */
uint64_t lapic_timer_set(uint64_t hz);   /* 0 stops it; returns initial count */
uint64_t lapic_sleep_ms(uint64_t ms);     /* SYS_SLEEP: halted, timer-woken */
uint64_t smp_start_aps(void);            /* INIT-SIPI-SIPI to all others */
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
void delay_us_ring0(uint64_t us);
uint64_t paging_map_mmio(uint64_t base, uint64_t size);   /* SYS_MAP_MMIO */

/* Trap handling. */
bool pio_emulate(struct trap_frame *f);
bool syscall_dispatch(struct trap_frame *f);
NORETURN void fatal_exception(const struct trap_frame *f);
NORETURN void ring0_exit(uint8_t status);
