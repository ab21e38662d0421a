/* kiln_bench_launch: the launch-rate benchmark's driver (bench/launch.py runs it).
 *
 *   kiln_bench_launch -n N -c C -e EXPECT [-t TIMEOUT_S] [-s SAMPLE_US] [-d ERR_DIR] -- PROGRAM [ARGS...]
 *
 * Starts PROGRAM N times, at most C at once, and starts the next one as soon as one is
 * done. "Done" means all gone: every process that run started has ended. Each run goes
 * through a runner (a fork of this program) that is a child subreaper
 * (PR_SET_CHILD_SUBREAPER), so what PROGRAM leaves behind (kiln's deferred KVM
 * teardown, vmm/machine/deferred_teardown.hpp) is reparented to it and waited for; the
 * runner exits when wait4 says no child is left, and only then is the slot free.
 *
 * Memory: every SAMPLE_US (default 1000; 0 = off) the sum of the resident set sizes
 * (/proc/PID/statm) of every live process the runs started, runners excluded. A
 * process is the runs' when its parent is a runner or one of the runs' processes; new
 * processes are found from the pids handed out since the last sample
 * (/proc/sys/kernel/ns_last_pid), so a sample reads a few files, not all of /proc.
 * Shared pages count once per process that maps them (that is what RSS is).
 *
 * Output on stdout, one line for the batch and one per run (times in ns from the
 * first start; cpu_us = user + system of PROGRAM and of everything it left behind):
 *   batch n= c= ok= failed= wall_ns= peak_rss_kib= samples= self_cpu_us= children_cpu_us=
 *   run i= status= timed_out= start_ns= exit_ns= gone_ns= cpu_us=
 * A run is ok when PROGRAM exited with status EXPECT within TIMEOUT_S (default 30).
 * With -d, run i's stderr goes to ERR_DIR/i.err (otherwise to /dev/null); stdout and
 * stdin are /dev/null. Exit status 0 when every run was ok, 1 when one was not, 2 on
 * a usage or system error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One run, in memory shared with its runner: the runner writes, the launcher reads. */
struct run {
    int64_t start_ns, exit_ns, gone_ns, cpu_us;
    int32_t pid; /* PROGRAM's pid, once forked */
    int32_t status;
    int32_t done; /* the runner has written everything */
    int32_t runner;
    int32_t timed_out;
    int32_t reaped;
};

struct proc { /* a live process of the runs, and its statm */
    pid_t pid;
    int fd;
};

#define MAX_PROCS 4096
static struct proc procs[MAX_PROCS];
static int nprocs;
static pid_t retry[64]; /* pids not yet in /proc when last seen */
static int nretry;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t tv_us(struct timeval tv) { return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec; }

static void on_sigchld(int sig) { (void)sig; }

static int read_file(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return (int)n;
}

static long pread_long(int fd) {
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    return strtol(buf, NULL, 10);
}

static _Noreturn void runner(struct run *r, int idx, char **argv, const char *err_dir) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    char err_path[4096];
    if (err_dir) snprintf(err_path, sizeof err_path, "%s/%d.err", err_dir, idx);
    pid_t pid = fork();
    if (pid < 0) _exit(2);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
        int err = err_dir ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                          : open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    __atomic_store_n(&r->pid, pid, __ATOMIC_RELEASE);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) _exit(2);
    r->exit_ns = now_ns();
    r->status = status;
    int64_t cpu = tv_us(ru.ru_utime) + tv_us(ru.ru_stime);
    int rest_status;
    while (wait4(-1, &rest_status, 0, &ru) > 0) cpu += tv_us(ru.ru_utime) + tv_us(ru.ru_stime);
    r->gone_ns = now_ns();
    r->cpu_us = cpu;
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    _exit(0);
}

/* Whose process is pid? Ours when its parent is a runner or one of ours. */
static int is_ours_parent(pid_t ppid, const struct run *runs, int started) {
    for (int i = 0; i < nprocs; ++i)
        if (procs[i].pid == ppid) return 1;
    for (int i = 0; i < started; ++i)
        if (runs[i].runner == ppid && !runs[i].reaped) return 1;
    return 0;
}

/* 1: added or not ours; 0: not in /proc yet (try again next sample). */
static int consider(pid_t pid, const struct run *runs, int started) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_file(path, buf, sizeof buf) < 0) return 0;
    char *tg = strstr(buf, "\nTgid:"), *pp = strstr(buf, "\nPPid:");
    if (!tg || !pp) return 1;
    if (strtol(tg + 6, NULL, 10) != pid) return 1; /* a thread: its process is counted */
    if (!is_ours_parent((pid_t)strtol(pp + 6, NULL, 10), runs, started)) return 1;
    if (nprocs == MAX_PROCS) return 1;
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    procs[nprocs++] = (struct proc){pid, fd};
    return 1;
}

static void find_new(int last_fd, pid_t *scanned, pid_t pid_max, const struct run *runs, int started) {
    long last = pread_long(last_fd);
    if (last < 0) return;
    pid_t again[64];
    int nagain = 0;
    for (int i = 0; i < nretry; ++i) consider(retry[i], runs, started); /* once more, then never */
    while (*scanned != (pid_t)last) {
        *scanned = *scanned + 1 >= pid_max ? 300 : *scanned + 1; /* pids wrap to 300 */
        if (!consider(*scanned, runs, started) && nagain < 64) again[nagain++] = *scanned;
    }
    memcpy(retry, again, sizeof(pid_t) * (size_t)nagain);
    nretry = nagain;
}

static long sample_rss_kib(long page_kib) {
    long sum = 0;
    char buf[128];
    for (int i = 0; i < nprocs;) {
        ssize_t n = pread(procs[i].fd, buf, sizeof buf - 1, 0);
        if (n <= 0) { /* gone */
            close(procs[i].fd);
            procs[i] = procs[--nprocs];
            continue;
        }
        buf[n] = 0;
        char *p = strchr(buf, ' ');
        long resident = p ? strtol(p + 1, NULL, 10) : 0;
        if (resident == 0) { /* a zombie: nothing resident any more */
            close(procs[i].fd);
            procs[i] = procs[--nprocs];
            continue;
        }
        sum += resident * page_kib;
        ++i;
    }
    return sum;
}

static int usage(void) {
    fprintf(stderr, "usage: kiln_bench_launch -n N -c C -e EXPECT [-t TIMEOUT_S] [-s SAMPLE_US] [-d ERR_DIR] "
                    "-- PROGRAM [ARGS...]\n");
    return 2;
}

int main(int argc, char **argv) {
    int n = 0, c = 0, expect = 0, opt;
    long timeout_s = 30, sample_us = 1000;
    const char *err_dir = NULL;
    while ((opt = getopt(argc, argv, "+n:c:e:t:s:d:")) != -1) {
        switch (opt) {
        case 'n': n = atoi(optarg); break;
        case 'c': c = atoi(optarg); break;
        case 'e': expect = atoi(optarg); break;
        case 't': timeout_s = atol(optarg); break;
        case 's': sample_us = atol(optarg); break;
        case 'd': err_dir = optarg; break;
        default: return usage();
        }
    }
    if (n < 1 || c < 1 || optind >= argc || sample_us < 0 || timeout_s < 1) return usage();
    char **prog = argv + optind;

    struct run *runs = mmap(NULL, sizeof(struct run) * (size_t)n, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (runs == MAP_FAILED) { perror("mmap"); return 2; }
    int last_fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
    char buf[64];
    pid_t pid_max = read_file("/proc/sys/kernel/pid_max", buf, sizeof buf) > 0 ? (pid_t)atol(buf) : 32768;
    if (sample_us > 0 && last_fd < 0) { perror("/proc/sys/kernel/ns_last_pid"); return 2; }
    long page_kib = sysconf(_SC_PAGESIZE) / 1024;

    /* SIGCHLD is blocked except inside ppoll, so a runner's exit wakes the loop at once. */
    sigset_t chld, waitmask;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &waitmask);
    sigdelset(&waitmask, SIGCHLD);
    struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGCHLD, &sa, NULL);

    struct rusage self0, kids0;
    getrusage(RUSAGE_SELF, &self0);
    getrusage(RUSAGE_CHILDREN, &kids0);
    pid_t scanned = last_fd >= 0 ? (pid_t)pread_long(last_fd) : 0;
    long peak_kib = 0, samples = 0;
    int started = 0, running = 0, reaped = 0;
    const int64_t t0 = now_ns(), interval = sample_us * 1000, timeout = timeout_s * 1000000000L;
    int64_t next_sample = t0;
    while (reaped < n) {
        while (running < c && started < n) {
            struct run *r = &runs[started];
            r->start_ns = now_ns() - t0;
            pid_t pid = fork();
            if (pid < 0) { perror("fork"); return 2; }
            if (pid == 0) runner(r, started, prog, err_dir);
            r->runner = pid;
            ++started;
            ++running;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < started; ++i) {
                if (runs[i].runner == pid && !runs[i].reaped) {
                    runs[i].reaped = 1;
                    if (!__atomic_load_n(&runs[i].done, __ATOMIC_ACQUIRE)) runs[i].status = -1; /* runner failed */
                    --running;
                    ++reaped;
                    break;
                }
            }
        }
        if (running < c && started < n) continue;
        if (reaped == n) break;
        int64_t now = now_ns();
        if (interval > 0 && now >= next_sample) {
            find_new(last_fd, &scanned, pid_max, runs, started);
            long kib = sample_rss_kib(page_kib);
            if (kib > peak_kib) peak_kib = kib;
            ++samples;
            next_sample += interval;
            if (next_sample <= now) next_sample = now + interval;
        }
        for (int i = 0; i < started; ++i) {
            struct run *r = &runs[i];
            pid_t p = __atomic_load_n(&r->pid, __ATOMIC_ACQUIRE);
            if (!r->reaped && !r->timed_out && p > 0 && now - t0 - r->start_ns > timeout) {
                r->timed_out = 1;
                kill(p, SIGKILL);
            }
        }
        int64_t wait_ns = interval > 0 ? next_sample - now_ns() : 100000000;
        if (wait_ns < 0) wait_ns = 0;
        struct timespec ts = {wait_ns / 1000000000, wait_ns % 1000000000};
        ppoll(NULL, 0, &ts, &waitmask);
    }
    int64_t wall = 0;
    int ok = 0;
    for (int i = 0; i < n; ++i) {
        if (runs[i].gone_ns - t0 > wall) wall = runs[i].gone_ns - t0;
        if (!runs[i].timed_out && runs[i].status >= 0 && WIFEXITED(runs[i].status) &&
            WEXITSTATUS(runs[i].status) == expect)
            ++ok;
    }
    struct rusage self1, kids1;
    getrusage(RUSAGE_SELF, &self1);
    getrusage(RUSAGE_CHILDREN, &kids1);
    printf("batch n=%d c=%d ok=%d failed=%d wall_ns=%" PRId64 " peak_rss_kib=%ld samples=%ld self_cpu_us=%" PRId64
           " children_cpu_us=%" PRId64 "\n",
           n, c, ok, n - ok, wall, peak_kib, samples,
           tv_us(self1.ru_utime) + tv_us(self1.ru_stime) - tv_us(self0.ru_utime) - tv_us(self0.ru_stime),
           tv_us(kids1.ru_utime) + tv_us(kids1.ru_stime) - tv_us(kids0.ru_utime) - tv_us(kids0.ru_stime));
    for (int i = 0; i < n; ++i) {
        const struct run *r = &runs[i];
        printf("run i=%d status=%d timed_out=%d start_ns=%" PRId64 " exit_ns=%" PRId64 " gone_ns=%" PRId64
               " cpu_us=%" PRId64 "\n",
               i, r->status, r->timed_out, r->start_ns, r->exit_ns ? r->exit_ns - t0 : -1,
               r->gone_ns ? r->gone_ns - t0 : -1, r->cpu_us);
    }
    return ok == n ? 0 : 1;
}
