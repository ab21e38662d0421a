/* job=exit status=N: exit with status N (0..255, default 0). */
#include "jobs/jobs.h"
#include "user/user.h"

int job_exit(void)
{
    uint64_t status;
    if (!arg_u64("status", 0, 0, 255, &status))
        return EXIT_USAGE;
    return (int)status;
}
