/* The job table. A job is one file with one run function; it reads its own
 * key=value arguments (arg_u64/arg_str) and returns the exit status.
 * To add a job: write jobs/<name>.c, declare it here, add it to jobs.c. */
#pragma once
#include "lib/types.h"

struct job {
    const char *name;
    const char *usage;      /* arguments, for the README and error messages */
    int (*run)(void);
};

const struct job *job_find(const char *name);
void jobs_list(void);

int job_hello(void);
int job_info(void);
int job_exit(void);
int job_smp(void);
int job_timer(void);
int job_compute(void);
int job_memfill(void);
int job_idle(void);
int job_memwalk(void);
int job_fault(void);
int job_pio(void);
int job_reset(void);
int job_blk_info(void);
int job_blk_crc(void);
int job_blk_write(void);
int job_blk_id(void);
int job_blk_bench(void);
int job_blk_hostile(void);
int job_blk_zero(void);
int job_blk_discard(void);
int job_net_echo(void);
int job_net_bench(void);
