/* job=reset: asks the keyboard controller to pulse the CPU reset line (command
 * 0xfe to port 0x64), the way Linux reboots with reboot=k. A VMM that models the
 * i8042 ends the VM as a guest reset; if the write returns, nothing reset us. */
#include "jobs/jobs.h"
#include "lib/arch.h"
#include "lib/console.h"
#include "user/user.h"

int job_reset(void)
{
    outb(0x64, 0xfe);   /* from ring 3 this traps; ring 0 performs it (pio_emul.c) */
    spin_ms(100);
    kprintf("reset: the i8042 reset command did not reset the machine\n");
    return EXIT_FAIL;
}
