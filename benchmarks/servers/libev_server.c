/*
 * libev_server.c: the C + libev baseline for the server benchmarks (issue 6).
 *
 * One thread, one libev loop: a non-blocking listener whose ev_io accepts every
 * pending connection (accept4, TCP_NODELAY as gsockd sets it), and one ev_io per
 * connection. Reads go into one shared 64 KiB buffer, so an idle connection costs
 * its small struct and nothing else; bytes that cannot be written at once (or, for
 * HTTP, a request head that is not complete yet) are kept in a per-connection
 * heap buffer, allocated only then.
 *
 *   echo: every byte read is written back.
 *   http: requests are delimited by "\r\n\r\n" (no bodies); each complete one gets
 *         "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!" and the
 *         connection stays open (keep-alive), as benchmarks/servers/http.lua does.
 *
 * This is the limit of the design gsockd implements (one loop, readiness, no
 * threads): what gsockd's per-request costs are compared with.
 *
 *   cc -O2 -o libev_server libev_server.c -lev
 *   ./libev_server echo|http [HOST:]PORT
 *
 * Prints "listening on HOST:PORT" once the listener is bound; SIGTERM/SIGINT exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)

static int http_mode;
static char rbuf[65536];   /* shared read buffer: connections keep nothing between reads */
static char obuf[65536];   /* shared output staging for HTTP replies */

struct conn {
    ev_io io;
    char *in;              /* HTTP: an incomplete request head carried to the next read */
    size_t in_len;
    char *out;             /* bytes the kernel did not take yet */
    size_t out_len, out_off;
};

static void conn_free(struct ev_loop *loop, struct conn *c) {
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what it can of data[0..len); keeps the rest and waits for EV_WRITE. 0 on failure. */
static int conn_write(struct ev_loop *loop, struct conn *c, const char *data, size_t len) {
    if (c->out_len > c->out_off) {         /* already backed up: append, keep the order */
        char *p = realloc(c->out, c->out_len + len);
        if (!p) return 0;
        memcpy(p + c->out_len, data, len);
        c->out = p;
        c->out_len += len;
        return 1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(c->io.fd, data + off, len - off, MSG_NOSIGNAL);
        if (w > 0) { off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return 0;
    }
    if (off == len) return 1;
    free(c->out);
    c->out = malloc(len - off);
    if (!c->out) return 0;
    memcpy(c->out, data + off, len - off);
    c->out_len = len - off;
    c->out_off = 0;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->io.fd, EV_READ | EV_WRITE);
    ev_io_start(loop, &c->io);
    return 1;
}

static int flush_out(struct ev_loop *loop, struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) { c->out_off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        return 0;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->io.fd, EV_READ);
    ev_io_start(loop, &c->io);
    return 1;
}

/* HTTP: answers every complete head in c->in + data; keeps an incomplete tail. */
static int http_input(struct ev_loop *loop, struct conn *c, const char *data, size_t len) {
    const char *p = data;
    size_t n = len;
    if (c->in_len) {                        /* rare: a head split across reads */
        char *q = realloc(c->in, c->in_len + len);
        if (!q) return 0;
        memcpy(q + c->in_len, data, len);
        c->in = q;
        c->in_len += len;
        p = c->in;
        n = c->in_len;
    }
    size_t out = 0, start = 0;
    for (;;) {
        const char *end = memmem(p + start, n - start, "\r\n\r\n", 4);
        if (!end) break;
        start = (size_t)(end - p) + 4;
        if (out + RESPONSE_LEN > sizeof obuf) {
            if (!conn_write(loop, c, obuf, out)) return 0;
            out = 0;
        }
        memcpy(obuf + out, RESPONSE, RESPONSE_LEN);
        out += RESPONSE_LEN;
    }
    if (out && !conn_write(loop, c, obuf, out)) return 0;
    size_t rest = n - start;
    if (rest > 1 << 20) return 0;           /* a head that never ends */
    if (p == c->in) {
        if (rest == 0) { free(c->in); c->in = NULL; c->in_len = 0; }
        else if (start) { memmove(c->in, c->in + start, rest); c->in_len = rest; }
    } else if (rest) {
        c->in = malloc(rest);
        if (!c->in) return 0;
        memcpy(c->in, p + start, rest);
        c->in_len = rest;
    }
    return 1;
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents) {
    struct conn *c = (struct conn *)w;
    if (revents & EV_WRITE) {
        if (!flush_out(loop, c)) { conn_free(loop, c); return; }
    }
    if (!(revents & EV_READ)) return;
    for (;;) {
        ssize_t r = recv(w->fd, rbuf, sizeof rbuf, 0);
        if (r > 0) {
            int ok = http_mode ? http_input(loop, c, rbuf, (size_t)r) : conn_write(loop, c, rbuf, (size_t)r);
            if (!ok) { conn_free(loop, c); return; }
            if ((size_t)r < sizeof rbuf) return;  /* drained: wait for the next readiness */
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_free(loop, c);                       /* closed by the peer, or failed */
        return;
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) perror("libev_server: accept");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) { close(fd); continue; }
        ev_io_init(&c->io, conn_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)w; (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "echo") && strcmp(argv[1], "http"))) {
        fprintf(stderr, "usage: libev_server echo|http [HOST:]PORT\n");
        return 2;
    }
    http_mode = strcmp(argv[1], "http") == 0;
    const char *host = "127.0.0.1", *port = argv[2];
    char hostbuf[64];
    const char *colon = strrchr(argv[2], ':');
    if (colon) {
        snprintf(hostbuf, sizeof hostbuf, "%.*s", (int)(colon - argv[2]), argv[2]);
        host = hostbuf;
        port = colon + 1;
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "libev_server: bad host %s\n", host); return 2; }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 511) < 0) {
        perror("libev_server: listen");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = EV_DEFAULT;
    ev_io lw;
    ev_io_init(&lw, accept_cb, lfd, EV_READ);
    ev_io_start(loop, &lw);
    ev_signal st, si;
    ev_signal_init(&st, stop_cb, SIGTERM);
    ev_signal_init(&si, stop_cb, SIGINT);
    ev_signal_start(loop, &st);
    ev_signal_start(loop, &si);
    printf("listening on %s:%s\n", host, port);
    fflush(stdout);
    ev_run(loop, 0);
    return 0;
}
