/* kiln_bench_spawn PROGRAM [ARGS...]: runs PROGRAM and writes one line to fd 3:
 *   status=<wait status> wall_ns=<fork to reap> utime_us=<> stime_us=<> maxrss_kib=<>
 *   drained_ns=<fork until every descendant is gone> rest_utime_us=<> rest_stime_us=<>
 *
 * It is a child subreaper (PR_SET_CHILD_SUBREAPER): processes PROGRAM leaves behind
 * (kiln's deferred KVM teardown, vmm/machine/deferred_teardown.hpp) are reparented to
 * it, reaped after PROGRAM, and their CPU time reported in rest_*: work a program
 * hands to a helper that outlives it still counts.
 *
 * Why this exists: a child's ru_maxrss is at least the resident size of the process
 * that forked it (fork copies the mm and its high-water mark; exec keeps the maximum).
 * Spawned straight from Python the floor "uses" 10-16 MiB; from a glibc program, 0.5-1
 * MiB too much. This program has no libc and touches a few pages, so what it adds to
 * the child's peak RSS is a few KiB. It dies with its parent (the benchmark's timeout
 * kills it) and takes the child with it (PR_SET_PDEATHSIG). fd 3 is closed in the child. */
#define SYS_WRITE 1
#define SYS_CLOSE 3
#define SYS_FORK 57
#define SYS_EXECVE 59
#define SYS_EXIT 60
#define SYS_WAIT4 61
#define SYS_PRCTL 157
#define SYS_CLOCK_GETTIME 228
#define PR_SET_PDEATHSIG 1
#define PR_SET_CHILD_SUBREAPER 36
#define SIGKILL 9
#define CLOCK_MONOTONIC 1
#define RESULT_FD 3

struct timespec_k { long sec, nsec; };
struct timeval_k { long sec, usec; };
struct rusage_k { struct timeval_k utime, stime; long maxrss, rest[13]; };

static long sys(long nr, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}

static long now_ns(void) {
    struct timespec_k ts;
    sys(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, (long)&ts, 0, 0);
    return ts.sec * 1000000000L + ts.nsec;
}

static char *put_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }

static char *put_num(char *p, long v) {
    char tmp[24];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    if (v < 0) *p++ = '-';
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    while (n) *p++ = tmp[--n];
    return p;
}

static void die(const char *msg) {
    long len = 0;
    while (msg[len]) ++len;
    sys(SYS_WRITE, 2, (long)msg, len, 0);
    sys(SYS_EXIT, 125, 0, 0, 0);
}

__attribute__((used, noreturn)) static void spawn_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 2) die("usage: kiln_bench_spawn PROGRAM [ARGS...]  (result line on fd 3)\n");

    sys(SYS_PRCTL, PR_SET_CHILD_SUBREAPER, 1, 0, 0);
    long t0 = now_ns();
    long pid = sys(SYS_FORK, 0, 0, 0, 0);
    if (pid < 0) die("kiln_bench_spawn: fork failed\n");
    if (pid == 0) {
        sys(SYS_PRCTL, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
        sys(SYS_CLOSE, RESULT_FD, 0, 0, 0);
        sys(SYS_EXECVE, (long)argv[1], (long)(argv + 1), (long)envp, 0);
        die("kiln_bench_spawn: exec failed\n"); /* exits 125 */
    }
    int status = 0;
    struct rusage_k ru;
    if (sys(SYS_WAIT4, pid, (long)&status, 0, (long)&ru) != pid) die("kiln_bench_spawn: wait4 failed\n");
    long wall = now_ns() - t0;
    /* Whatever PROGRAM left behind, until none is left (wait4 fails with ECHILD). */
    long rest_utime = 0, rest_stime = 0;
    struct rusage_k rest;
    int rest_status;
    while (sys(SYS_WAIT4, -1, (long)&rest_status, 0, (long)&rest) > 0) {
        rest_utime += rest.utime.sec * 1000000 + rest.utime.usec;
        rest_stime += rest.stime.sec * 1000000 + rest.stime.usec;
    }
    long drained = now_ns() - t0;

    char line[256], *p = line;
    p = put_str(p, "status=");
    p = put_num(p, status);
    p = put_str(p, " wall_ns=");
    p = put_num(p, wall);
    p = put_str(p, " utime_us=");
    p = put_num(p, ru.utime.sec * 1000000 + ru.utime.usec);
    p = put_str(p, " stime_us=");
    p = put_num(p, ru.stime.sec * 1000000 + ru.stime.usec);
    p = put_str(p, " maxrss_kib=");
    p = put_num(p, ru.maxrss);
    p = put_str(p, " drained_ns=");
    p = put_num(p, drained);
    p = put_str(p, " rest_utime_us=");
    p = put_num(p, rest_utime);
    p = put_str(p, " rest_stime_us=");
    p = put_num(p, rest_stime);
    *p++ = '\n';
    if (sys(SYS_WRITE, RESULT_FD, (long)line, p - line, 0) != p - line) die("kiln_bench_spawn: cannot write to fd 3\n");
    sys(SYS_EXIT, 0, 0, 0, 0);
    for (;;) {}
}

__asm__(".globl _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call spawn_main\n");
