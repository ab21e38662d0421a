/* job=fault kind=pf|gp|ud|de: raise a CPU exception in ring 3 on purpose, to
 * test a VMM's handling of the "unexpected exception" path: ring 0 prints
 * "testguest: exception N at rip=... err=..." and exits with status 3.
 *   pf  read from an unmapped address (vector 14)
 *   gp  `hlt` in ring 3, a privileged instruction (vector 13)
 *   ud  `ud1`, an undefined opcode that is not the ud2 syscall (vector 6)
 *   de  divide by zero (vector 0) */
#include "jobs/jobs.h"
#include "lib/console.h"
#include "lib/string.h"
#include "user/user.h"

int job_fault(void)
{
    char kind[8];
    if (!arg_str("kind", "pf", kind, sizeof kind))
        return EXIT_USAGE;
    if (strcmp(kind, "pf") == 0) {
        volatile uint64_t *p = (volatile uint64_t *)GiB(1024);   /* above the 512 GiB map */
        (void)*p;
    } else if (strcmp(kind, "gp") == 0) {
        __asm__ volatile("hlt");
    } else if (strcmp(kind, "ud") == 0) {
        __asm__ volatile("ud1 %%eax, %%eax" ::: "memory");
    } else if (strcmp(kind, "de") == 0) {
        uint32_t eax = 1, edx = 0, zero = 0;
        __asm__ volatile("divl %2" : "+a"(eax), "+d"(edx) : "r"(zero));
    } else {
        kprintf("testguest: bad value for kind: '%s' (expected pf, gp, ud or de)\n", kind);
        return EXIT_USAGE;
    }
    kprintf("fault: no exception raised\n");
    return EXIT_FAIL;
}
