/* Exception dispatch. Two exceptions from ring 3 are part of the design:
 *   #GP (13) from an in/out instruction -> port I/O emulation (pio_emul.c),
 *   #UD (6) from `ud2`                   -> guest syscall (syscall.c).
 * Anything else is a bug: one line on the console, then exit status 3. */
#include "kernel/kernel.h"
#include "lib/arch.h"
#include "lib/console.h"

#define EXIT_PORT 0x501
#define RFLAGS_IF 0x200

void trap_dispatch(struct trap_frame *f);

void trap_dispatch(struct trap_frame *f)
{
    bool user = (f->cs & 3) == 3;
    if (user) {
        /* Interrupts reach ring 3 only if the iretq frame has IF set;
         * kvm_pvm's view of ring-3 RFLAGS is not to be trusted. */
        f->rflags |= RFLAGS_IF;
        if (f->vector == 13 && pio_emulate(f))
            return;
        if (f->vector == 6 && syscall_dispatch(f))
            return;
    }
    fatal_exception(f);
}

NORETURN void ring0_exit(uint8_t status)
{
    outb(EXIT_PORT, status);
    halt_forever();
}

NORETURN void fatal_exception(const struct trap_frame *f)
{
    if (f->vector == 14)
        kprintf("testguest: exception %lu at rip=0x%lx err=0x%lx cr2=0x%lx\n", f->vector, f->rip,
                f->err, read_cr2());
    else
        kprintf("testguest: exception %lu at rip=0x%lx err=0x%lx\n", f->vector, f->rip, f->err);
    ring0_exit(3);
}
