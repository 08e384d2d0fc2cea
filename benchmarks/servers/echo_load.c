/*
 * echo_load.c: the echo load generator of the server benchmarks (issue 6).
 *
 * Opens CONNS connections to HOST:PORT and keeps exactly one 64-byte message in
 * flight on each: send it, read the 64 bytes back, check that they are the bytes
 * sent, send the next. Each message is 63 printable bytes (connection number and
 * sequence number, so a mixed-up or stale reply is caught) and a "\n", so line-based
 * echo servers serve it too. One thread, epoll, level-triggered reads.
 *
 * The first WARMUP seconds are not counted; then for SECONDS seconds it counts round
 * trips and records each one's latency (send to last byte back) in 1 µs buckets.
 * With --pid PID it also reads that process's utime and stime (/proc/PID/stat) at
 * the start and the end of the counted window, so the server's CPU time per round
 * trip covers exactly the requests counted.
 *
 *   cc -O2 -o echo_load echo_load.c
 *   ./echo_load HOST PORT CONNS SECONDS [WARMUP] [--pid PID]
 *
 * Prints one line:
 *   RESULT echo conns=N seconds=S requests=R rps=X p50_us=A p99_us=B
 *          [server_user_us=U server_sys_us=K server_cpu_us=U+K]
 * and exits 1 on any failure (a refused connection, a short or wrong reply, a close).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define BUCKETS 1000000      /* 1 µs each: up to 1 s; slower round trips go to the last */

struct conn {
    int fd;
    uint32_t id;
    uint64_t seq;
    size_t got;
    double sent_at;
    char msg[MSG];
    char buf[MSG];
};

static uint32_t *hist;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "echo_load: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

/* utime and stime of PID in clock ticks; 0 on success. */
static int cpu_ticks(int pid, long long *user, long long *sys) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strrchr(text, ')');   /* the command name may hold spaces */
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    *user = (long long)ut;
    *sys = (long long)st;
    return 0;
}

static void next_message(struct conn *c) {
    c->seq++;
    int n = snprintf(c->msg, MSG, "conn %06u seq %012llu ", c->id, (unsigned long long)c->seq);
    for (int i = n; i < MSG - 1; i++) c->msg[i] = (char)('a' + (i + c->seq) % 26);
    c->msg[MSG - 1] = '\n';
    c->got = 0;
}

static void send_message(struct conn *c) {
    c->sent_at = now();
    ssize_t w = send(c->fd, c->msg, MSG, MSG_NOSIGNAL);
    if (w != MSG) die(w < 0 ? "send" : "short send");
}

int main(int argc, char **argv) {
    int pid = 0;
    char *pos[6];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pid") && i + 1 < argc) pid = atoi(argv[++i]);
        else if (npos < 6) pos[npos++] = argv[i];
    }
    if (npos < 4) {
        fprintf(stderr, "usage: echo_load HOST PORT CONNS SECONDS [WARMUP] [--pid PID]\n");
        return 2;
    }
    const char *host = pos[0];
    int port = atoi(pos[1]), nconns = atoi(pos[2]);
    double seconds = atof(pos[3]), warmup = npos > 4 ? atof(pos[4]) : 1.0;
    if (nconns < 1 || seconds <= 0) { fprintf(stderr, "echo_load: bad CONNS or SECONDS\n"); return 2; }

    hist = calloc(BUCKETS, sizeof *hist);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!hist || !conns) die("calloc");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "echo_load: bad host %s\n", host); return 2; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->id = (uint32_t)i;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket");
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }

    double start = now(), counting_from = start + warmup, until = counting_from + seconds;
    long long u0 = 0, s0 = 0, u1 = 0, s1 = 0;
    int cpu_ok = 0;
    int counting = warmup <= 0;
    if (counting && pid) cpu_ok = cpu_ticks(pid, &u0, &s0) == 0;
    for (int i = 0; i < nconns; i++) { next_message(&conns[i]); send_message(&conns[i]); }

    unsigned long long requests = 0;
    struct epoll_event events[256];
    for (;;) {
        double t = now();
        if (!counting && t >= counting_from) {
            counting = 1;
            if (pid) cpu_ok = cpu_ticks(pid, &u0, &s0) == 0;
            counting_from = t;
        }
        if (t >= until) break;
        int n = epoll_wait(ep, events, 256, 100);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            ssize_t r = recv(c->fd, c->buf + c->got, MSG - c->got, 0);
            if (r == 0) { errno = 0; die("the server closed a connection"); }
            if (r < 0) { if (errno == EAGAIN || errno == EINTR) continue; die("recv"); }
            c->got += (size_t)r;
            if (c->got < MSG) continue;
            if (memcmp(c->buf, c->msg, MSG) != 0) {
                fprintf(stderr, "echo_load: connection %u got the wrong bytes back:\n  sent %.63s\n  got  %.63s\n",
                        c->id, c->msg, c->buf);
                return 1;
            }
            double done = now();
            if (counting) {
                requests++;
                long us = (long)((done - c->sent_at) * 1e6);
                hist[us < BUCKETS ? us : BUCKETS - 1]++;
            }
            next_message(c);
            send_message(c);
        }
    }
    double elapsed = now() - counting_from;
    if (pid && cpu_ok) cpu_ok = cpu_ticks(pid, &u1, &s1) == 0;
    for (int i = 0; i < nconns; i++) close(conns[i].fd);

    if (requests == 0) { fprintf(stderr, "echo_load: no round trip completed\n"); return 1; }
    unsigned long long seen = 0;
    long p50 = -1, p99 = -1;
    for (long i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (p50 < 0 && seen * 100 >= requests * 50) p50 = i;
        if (p99 < 0 && seen * 100 >= requests * 99) { p99 = i; break; }
    }
    printf("RESULT echo conns=%d seconds=%.3f requests=%llu rps=%.0f p50_us=%ld p99_us=%ld",
           nconns, elapsed, requests, requests / elapsed, p50, p99);
    if (pid && cpu_ok) {
        double us = 1e6 / (double)sysconf(_SC_CLK_TCK);
        printf(" server_user_us=%.0f server_sys_us=%.0f server_cpu_us=%.0f",
               (double)(u1 - u0) * us, (double)(s1 - s0) * us, (double)(u1 - u0 + s1 - s0) * us);
    }
    printf("\n");
    return 0;
}
