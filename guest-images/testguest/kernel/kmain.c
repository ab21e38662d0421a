/* Ring-0 setup, then the drop to ring 3, where every job runs.
 *
 * On kvm_pvm ring-0 code is emulated at about 1.5 M instructions/s, so this
 * does the minimum: copy boot info, build page tables and descriptor tables,
 * quiet the legacy PIC, enable the LAPIC, learn the TSC frequency. */
#include "kernel/bootinfo.h"
#include "kernel/kernel.h"
#include "user/user.h"

struct bootinfo boot;

NORETURN void kmain(uint32_t kind, uint64_t info);

NORETURN void kmain(uint32_t kind, uint64_t info)
{
    cpu_tables_init();          /* first, so a fault below is reported */
    bootinfo_parse(kind, info);
    paging_init();
    cpuinfo_init();
    pic_disable();
    lapic_init();
    tsc_init();
    enter_user(user_main, ustack_top);
}
