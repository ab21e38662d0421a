/* udp_blast: the host->guest sender of bench/net.py. Sends UDP datagrams of a fixed
 * size to DST:PORT as fast as sendmmsg(2) takes them, for SECONDS seconds, with a
 * sequence number (0, 1, 2, ..., little-endian) in the first 8 payload bytes, as the
 * test guest's `job=net-bench mode=rx seq=1` expects (a payload shorter than 8 bytes
 * carries none). A datagram sendmmsg did not take is sent again with the same number,
 * so every gap the guest sees was lost after the socket: in the TAP's queue or in the
 * VMM. Prints one line: `udp_blast: sent=N bytes=N seconds=S.sss errors=N`.
 *
 *   udp_blast DST_IP PORT SIZE SECONDS [RATE]
 *
 * RATE (datagrams per second, default 0: as fast as it can) paces the stream: batches
 * of RATE/10000 datagrams (1 to 64) on a fixed schedule, sleeping in between, so the
 * sender costs CPU in proportion to the rate. bench/net.py offers a few fixed rates
 * this way (its rx load curve).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 64, MAX_SIZE = 65507 };

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int number(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long port, size, seconds, rate = 0;
    struct sockaddr_in dst = {.sin_family = AF_INET};
    if ((argc != 5 && argc != 6) || inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1 ||
        number(argv[2], 1, 65535, &port) || number(argv[3], 0, MAX_SIZE, &size) ||
        number(argv[4], 1, 86400, &seconds) || (argc == 6 && number(argv[5], 0, 100000000, &rate))) {
        fprintf(stderr, "usage: udp_blast DST_IP PORT SIZE(0..%d) SECONDS [RATE]\n", MAX_SIZE);
        return 2;
    }
    /* Paced: the batch's share of a second, and wake-ups on time (the default 50 us
     * of timer slack would be half a period at 10,000 batches a second). */
    const int batch = rate == 0 ? BATCH : rate / 10000 < 1 ? 1 : rate / 10000 > BATCH ? BATCH : (int)(rate / 10000);
    const double period = rate == 0 ? 0 : (double)batch / (double)rate;
    if (rate)
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    dst.sin_port = htons((uint16_t)port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        perror("udp_blast: socket/connect");
        return 1;
    }
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

    static unsigned char payload[BATCH][MAX_SIZE];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        for (long j = 8; j < size; j++)
            payload[i][j] = (unsigned char)(j * 7 + 1);
        iov[i].iov_base = payload[i];
        iov[i].iov_len = (size_t)size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    uint64_t seq = 0, errors = 0;
    const double start = now_seconds(), end = start + (double)seconds;
    double t = start, due = start;
    while (t < end) {
        if (rate) {
            /* On schedule, not after the last send: a batch up to four periods late
             * goes at once; later than that the schedule restarts from now, so a
             * stall is not made up for by a burst. */
            if (t < due) {
                double left = due - t;
                struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
                nanosleep(&ts, NULL);
            } else if (t - due > period * 4) {
                due = t;
            }
            due += period;
        }
        if (size >= 8)
            for (uint64_t i = 0; i < (uint64_t)batch; i++) {
                uint64_t v = seq + i;
                memcpy(payload[i], &v, 8);
            }
        int n = sendmmsg(fd, msgs, (unsigned)batch, 0);
        if (n > 0)
            seq += (uint64_t)n;
        else if (errno != EINTR)
            errors++; /* ENOBUFS, ECONNREFUSED (an ICMP error came back): go on */
        t = now_seconds();
    }
    printf("udp_blast: sent=%llu bytes=%llu seconds=%.3f errors=%llu\n", (unsigned long long)seq,
           (unsigned long long)(seq * (uint64_t)size), t - start, (unsigned long long)errors);
    return 0;
}
