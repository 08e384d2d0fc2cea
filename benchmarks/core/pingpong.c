/*
 * pingpong.c: the C + libev baseline for benchmarks/core/pingpong.lua.
 *
 * A socketpair(AF_UNIX, SOCK_STREAM), one ev_io read watcher per end, single
 * thread. End A writes a MSG_SIZE-byte message; each end's callback reads it and
 * writes it back, until A has seen N round trips. Both watchers stay started for
 * the whole run, so the kernel work per round trip is 2 epoll_wait, 2 read and
 * 2 write: the floor that the Lua fibers are compared with.
 *
 *   cc -O2 -o pingpong pingpong.c -lev
 *   ./pingpong [N]        (default 200000)
 *
 * Prints: "RESULT c n=N seconds=S ns_per_rt=X".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE 1  /* keep equal to MSG_SIZE in pingpong.lua */

static long rounds, target;
static char msg[MSG_SIZE];

static void die(const char *what) {
    fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void read_exact(int fd, char *buf) {
    ssize_t r = read(fd, buf, MSG_SIZE);
    if (r != MSG_SIZE) die(r < 0 ? "read" : "short read");
}

static void write_msg(int fd) {
    ssize_t w = write(fd, msg, MSG_SIZE);
    if (w != MSG_SIZE) die(w < 0 ? "write" : "short write");
}

/* End B: echo. */
static void b_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop; (void)revents;
    char buf[MSG_SIZE];
    read_exact(w->fd, buf);
    write_msg(w->fd);
}

/* End A: count a round trip, send the next message or stop. */
static ev_io wa, wb;
static void a_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    char buf[MSG_SIZE];
    read_exact(w->fd, buf);
    if (++rounds < target) {
        write_msg(w->fd);
    } else {
        ev_io_stop(loop, &wa);
        ev_io_stop(loop, &wb);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    target = argc > 1 ? atol(argv[1]) : 200000;
    if (target < 1) target = 1;
    memset(msg, 'x', sizeof msg);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    ev_io_init(&wa, a_cb, sv[0], EV_READ);
    ev_io_init(&wb, b_cb, sv[1], EV_READ);
    ev_io_start(loop, &wa);
    ev_io_start(loop, &wb);
    double t0 = now();
    write_msg(sv[0]);
    ev_run(loop, 0);
    double t = now() - t0;
    printf("RESULT c n=%ld seconds=%.6f ns_per_rt=%.1f\n", rounds, t, t * 1e9 / rounds);
    return 0;
}
