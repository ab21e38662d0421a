#include "jobs/jobs.h"
#include "lib/console.h"
#include "lib/string.h"

static const struct job jobs[] = {
    { "hello", "", job_hello },
    { "info", "", job_info },
    { "exit", "status=N", job_exit },
    { "smp", "", job_smp },
    { "timer", "ms=N hz=H tolerance=PCT", job_timer },
    { "compute", "seconds=N", job_compute },
    { "memfill", "mib=N seconds=S hold=H", job_memfill },
    { "memwalk", "mib=N seconds=S", job_memwalk },
    { "idle", "seconds=S", job_idle },
    { "fault", "kind=pf|gp|ud|de|triple|emulation", job_fault },
    { "reset", "", job_reset },
    { "pio", "", job_pio },
    { "blk-info", "", job_blk_info },
    { "blk-crc", "disk=I sector=S count=C", job_blk_crc },
    { "blk-write", "disk=I sector=S count=C byte=B", job_blk_write },
    { "blk-id", "disk=I", job_blk_id },
    { "blk-bench", "disk=I pattern=randread|randwrite|read|write bs=BYTES qd=N seconds=S", job_blk_bench },
    { "blk-hostile", "disk=I", job_blk_hostile },
    { "blk-zero", "disk=I sector=S count=C unmap=0|1", job_blk_zero },
    { "blk-discard", "disk=I sector=S count=C", job_blk_discard },
    { "net-echo", "ip=A.B.C.D seconds=S rxbuf=BYTES", job_net_echo },
    { "net-bench", "mode=tx ip=A.B.C.D dst=A.B.C.D:PORT dstmac=MAC size=BYTES sport=P seconds=S wait=W | "
                   "mode=rx ip=A.B.C.D port=P seconds=S wait=W seq=0|1", job_net_bench },
};

const struct job *job_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(jobs); i++)
        if (strcmp(jobs[i].name, name) == 0)
            return &jobs[i];
    return 0;
}

void jobs_list(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(jobs); i++)
        kprintf("testguest: job=%s %s\n", jobs[i].name, jobs[i].usage);
}
