/* job=idle seconds=S: print "idle: waiting", then wait S seconds halted (0, the
 * default: until the VM is stopped), watching the power button, as an idle
 * server does. With the button pressed the guest powers off through ACPI S5
 * (kiln: 120) unless powerbutton=ignore. */
#include "jobs/jobs.h"
#include "lib/console.h"
#include "user/user.h"

int job_idle(void)
{
    uint64_t seconds;
    if (!arg_u64("seconds", 0, 0, 86400 * 365, &seconds))
        return EXIT_USAGE;
    kprintf("idle: waiting\n");
    if (seconds) {
        sleep_ms(seconds * 1000);
    } else {
        for (;;)
            sleep_ms(3600 * 1000);
    }
    kprintf("idle: done\n");
    return EXIT_OK;
}
