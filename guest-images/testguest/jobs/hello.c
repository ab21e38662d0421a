/* job=hello: one greeting line, exit 0.
 *   Hello from the Kiln test guest: boot=pvh|bzimage cpus=N memory=M MiB
 * memory = the usable (type 1) RAM of the memory map, rounded down to MiB.
 * (job=info tells the 32-bit and 64-bit bzImage entries apart.) */
#include "boot/layout.h"
#include "jobs/jobs.h"
#include "lib/console.h"
#include "user/user.h"

int job_hello(void)
{
    kprintf("Hello from the Kiln test guest: boot=%s cpus=%u memory=%lu MiB\n",
            boot.kind == BOOT_PVH ? "pvh" : "bzimage", platform_cpu_count(0), platform_ram_bytes() >> 20);
    return EXIT_OK;
}
