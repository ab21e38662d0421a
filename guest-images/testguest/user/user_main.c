/* Ring 3 starts here: pick the job named by job= (default hello), run it,
 * exit with its status. */
#include "jobs/jobs.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/user.h"

NORETURN void user_main(void)
{
    if (boot.memmap_fallback)
        kprintf("testguest: warning: no memory map from the loader, assuming low RAM + image only\n");
    if (boot.cmdline_truncated)
        kprintf("testguest: warning: command line truncated to %u bytes\n", CMDLINE_MAX - 1);

    char name[64];
    if (!power_init() || !arg_str("job", "hello", name, sizeof name))
        guest_exit(EXIT_USAGE);
    const struct job *job = job_find(name);
    if (!job) {
        kprintf("testguest: unknown job '%s'\n", name);
        jobs_list();
        guest_exit(EXIT_USAGE);
    }
    guest_exit(job->run());
}
