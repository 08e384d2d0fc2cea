/*
 * hold_conns.c: opens COUNT TCP connections to a server and holds them, idle, for the
 * idle-connection memory benchmark (issue 6).
 *
 * Raises its own descriptor limit to COUNT + 64 (setrlimit; root may raise the hard
 * limit too). One source address has about 28,000 ephemeral ports towards one
 * server address (net.ipv4.ip_local_port_range), and connect() slows down as they
 * run out, so every PER_SOURCE (8,000) connections it binds the next loopback source
 * address, 127.0.0.2, 127.0.0.3, ... (the whole of 127/8 is local on Linux), with
 * IP_BIND_ADDRESS_NO_PORT so that the kernel picks the port at connect time. Connects are non-blocking, at most 512 in progress.
 * Nothing is ever sent, unless --request: then each connection, once connected, sends
 * one "GET / HTTP/1.1" (keep-alive) and reads the whole response (Content-Length or
 * chunked) before it counts as held, idle: an HTTP server's connection that has served
 * a request and waits for the next. A response that is not 2xx, or a close, counts as
 * failed.
 *
 * A connect completes when the kernel has done the handshake, before the server has
 * accepted: a client faster than the server's accept loop overflows the listen queue,
 * and the kernel then drops handshakes (retried after 1 s, and lost for good after
 * about a minute of retries). So it paces itself: before each connect it keeps the
 * listener's accept queue (read through sock_diag netlink, as `ss -l` shows it in
 * Recv-Q) below 128 connections, and it prints READY only once the accept queue is
 * empty again: the time to READY is the time the server took to accept them all.
 * With --pid PID (the server) READY also waits until PID holds COUNT more
 * descriptors than when it started (/proc/PID/fd).
 *
 *   cc -O2 -o hold_conns hold_conns.c
 *   ./hold_conns HOST PORT COUNT [SECONDS] [--pid PID] [--request]
 *
 * When every connect has finished it prints
 *   READY held=N failed=F seconds=S
 * (F > 0 with the first error on stderr), then holds the connections until it is
 * killed or SECONDS pass (default 120), and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PER_SOURCE 8000
#define IN_FLIGHT 512
#define QUEUED 128
#define RESPONSE_MAX 4096

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/* --request: 1 when resp[0..len) is a whole response (Content-Length or chunked body
   read), 0 when more is to come, -1 when it is not one or not 2xx. */
static int response_complete(const char *resp, size_t len) {
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (!end) return len < RESPONSE_MAX ? 0 : -1;
    if (len < 12 || memcmp(resp, "HTTP/1.", 7) || resp[9] != '2') return -1;
    size_t head = (size_t)(end - resp) + 4;
    for (const char *p = resp; p < end; p++) {
        if (p[0] == '\n' && strncasecmp(p + 1, "content-length:", 15) == 0) {
            size_t body = strtoul(p + 16, NULL, 10);
            return len >= head + body ? 1 : 0;
        }
    }
    /* chunked (nginx's ngx.print): done at the last chunk */
    return len >= head + 5 && memcmp(resp + len - 5, "0\r\n\r\n", 5) == 0 ? 1 : 0;
}

/* The number of descriptors PID holds, or -1. */
static int fd_count(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* The accept queue length of the TCP listener on port (network order) `port`, or -1. */
static int accept_queue(int nl, uint16_t port) {
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg = {
        .nlh = { .nlmsg_len = sizeof msg, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
        .req = { .sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP, .idiag_states = 1 << TCP_LISTEN },
    };
    if (send(nl, &msg, sizeof msg, 0) < 0) return -1;
    int result = -1;
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(nl, buf, sizeof buf, 0);
        if (n <= 0) return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return result;
            if (h->nlmsg_type == NLMSG_ERROR) return -1;
            struct inet_diag_msg *d = NLMSG_DATA(h);
            if (d->id.idiag_sport == port) result = (int)d->idiag_rqueue;
        }
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int pid = 0, request = 0;
    char *pos[4];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pid") && i + 1 < argc) pid = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--request")) request = 1;
        else if (npos < 4) pos[npos++] = argv[i];
    }
    if (npos < 3) {
        fprintf(stderr, "usage: hold_conns HOST PORT COUNT [SECONDS] [--pid PID] [--request]\n");
        return 2;
    }
    int count = atoi(pos[2]);
    double hold = npos > 3 ? atof(pos[3]) : 120;
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(pos[1])) };
    if (count < 1 || inet_pton(AF_INET, pos[0], &dst.sin_addr) != 1) {
        fprintf(stderr, "hold_conns: bad arguments\n");
        return 2;
    }
    struct rlimit rl = { (rlim_t)count + 64, (rlim_t)count + 64 };
    struct rlimit cur;
    getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_cur < rl.rlim_cur) {
        if (cur.rlim_max > rl.rlim_max) rl.rlim_max = cur.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            fprintf(stderr, "hold_conns: cannot raise the descriptor limit to %d: %s\n", count + 64, strerror(errno));
            return 1;
        }
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = malloc(sizeof(int) * (size_t)count);
    /* --request: the response read so far, while it is awaited (NULL before and after) */
    char **resp = request ? calloc((size_t)count, sizeof *resp) : NULL;
    size_t *resp_len = request ? calloc((size_t)count, sizeof *resp_len) : NULL;
    if (ep < 0 || !fds || (request && (!resp || !resp_len))) { perror("hold_conns"); return 1; }
    static char rbuf[RESPONSE_MAX];

    int base = pid ? fd_count(pid) : -1;
    if (pid && base < 0) { fprintf(stderr, "hold_conns: cannot read /proc/%d/fd\n", pid); return 1; }
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0 || accept_queue(nl, dst.sin_port) < 0) {
        fprintf(stderr, "hold_conns: cannot read the listener's accept queue (sock_diag): not pacing\n");
        if (nl >= 0) close(nl);
        nl = -1;
    }
    double t0 = now();
    int opened = 0, pending = 0, held = 0, failed = 0;
    int first_error = 0, stalled = 0;
    double progress = t0;                            /* when a connect or an accept last finished */
    struct epoll_event events[IN_FLIGHT];
    while ((opened < count || pending > 0) && !stalled) {
        while (opened < count && pending < IN_FLIGHT) {
            if (nl >= 0 && opened % 16 == 0 && accept_queue(nl, dst.sin_port) >= QUEUED) {
                if (pending > 0) break;              /* reap finished connects meanwhile */
                if (now() - progress > 30) { stalled = 1; break; }
                poll(NULL, 0, 1);
                continue;
            }
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) { if (!first_error) first_error = errno; failed++; opened++; continue; }
            int source = opened / PER_SOURCE;
            if (source > 0) {
                int one = 1;
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
                struct sockaddr_in src = { .sin_family = AF_INET };
                src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)source);  /* 127.0.0.2, ... */
                if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
                    if (!first_error) first_error = errno;
                    close(fd); failed++; opened++; continue;
                }
            }
            fds[opened++] = fd;
            if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0) {
                if (!request) { held++; continue; }
                /* connected at once: wait for writability as the others do, and send then */
            } else if (errno != EINPROGRESS) {
                if (!first_error) first_error = errno;
                close(fd); fds[opened - 1] = -1; failed++; continue;
            }
            struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)(opened - 1) };
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            pending++;
        }
        if (pending == 0 || stalled) continue;
        int n = epoll_wait(ep, events, IN_FLIGHT, nl >= 0 ? 1 : 1000);
        if (n < 0 && errno != EINTR) { perror("hold_conns: epoll_wait"); return 1; }
        if (n <= 0) {
            if (now() - progress > 30) stalled = 1;
            continue;
        }
        progress = now();
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32, fd = fds[i], err = 0;
            if (request && resp[i]) {                /* the response, or part of it */
                ssize_t r = recv(fd, rbuf, sizeof rbuf, 0);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                int done = -1;
                if (r > 0 && resp_len[i] + (size_t)r <= RESPONSE_MAX) {
                    memcpy(resp[i] + resp_len[i], rbuf, (size_t)r);
                    resp_len[i] += (size_t)r;
                    done = response_complete(resp[i], resp_len[i]);
                }
                if (done == 0) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                pending--;
                if (done < 0 && !first_error) first_error = r < 0 ? errno : r == 0 ? ECONNRESET : EPROTO;
                free(resp[i]); resp[i] = NULL;
                if (done > 0) held++;
                else { close(fd); fds[i] = -1; failed++; }
                continue;
            }
            socklen_t len = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (!err && request) {                   /* connected: send the request, await the response */
                resp[i] = malloc(RESPONSE_MAX);
                if (!resp[i]) err = ENOMEM;
                else if ((errno = 0, send(fd, REQUEST, sizeof REQUEST - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof REQUEST - 1)))
                    err = errno ? errno : EIO;
                if (!err) {
                    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                    continue;
                }
                free(resp[i]); resp[i] = NULL;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            pending--;
            if (err) { if (!first_error) first_error = err; close(fd); fds[i] = -1; failed++; }
            else held++;
        }
    }
    if (stalled) fprintf(stderr, "hold_conns: no progress for 30 s (%d connects in progress)\n", pending);
    /* READY once the server has accepted them all (up to 60 s more). */
    double settle = now() + 60;
    while (nl >= 0 && accept_queue(nl, dst.sin_port) > 0 && now() < settle) poll(NULL, 0, 1);
    while (pid && fd_count(pid) - base < held && now() < settle) poll(NULL, 0, 2);
    if (failed) fprintf(stderr, "hold_conns: %d connections failed%s, the first with: %s\n", failed, request ? " (connect, or request and response)" : "", strerror(first_error));
    printf("READY held=%d failed=%d seconds=%.2f\n", held, failed, now() - t0);
    fflush(stdout);

    /* Hold until killed or the time is up. */
    double until = now() + hold;
    while (now() < until) poll(NULL, 0, 500);
    return 0;
}
