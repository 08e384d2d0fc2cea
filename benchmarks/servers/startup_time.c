/*
 * startup_time.c: time from exec to a listening server (issue 6).
 *
 * Takes the time, forks and execs CMD (its stdout and stderr to /dev/null), then tries
 * to connect to 127.0.0.1:PORT every 100 µs until a connect succeeds; that instant
 * minus the first is the startup time. Then it sends the server SIGTERM (SIGKILL
 * after 5 s) and reaps it. Repeats RUNS times and prints the median.
 *
 *   cc -O2 -o startup_time startup_time.c
 *   ./startup_time PORT RUNS TIMEOUT_SECONDS -- CMD [ARGS...]
 *
 * Prints "RESULT startup runs=N median_ms=M min_ms=A max_ms=B"; exits 1 when the
 * server does not listen within TIMEOUT_SECONDS or exits first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stop(pid_t pid) {
    kill(pid, SIGTERM);
    double until = now() + 5;
    while (now() < until) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(int argc, char **argv) {
    int dash = 0;
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "--")) { dash = i; break; }
    if (dash != 4 || dash + 1 >= argc) {
        fprintf(stderr, "usage: startup_time PORT RUNS TIMEOUT_SECONDS -- CMD [ARGS...]\n");
        return 2;
    }
    int port = atoi(argv[1]), runs = atoi(argv[2]);
    double timeout = atof(argv[3]);
    if (runs < 1 || runs > 1000) runs = 1;
    double *ms = calloc((size_t)runs, sizeof *ms);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);

    for (int r = 0; r < runs; r++) {
        /* The port must be free before the clock starts (the previous run's server is gone). */
        double t0 = now();
        pid_t pid = fork();
        if (pid < 0) { perror("startup_time: fork"); return 1; }
        if (pid == 0) {
            int devnull = open("/dev/null", O_RDWR);
            dup2(devnull, 1);
            dup2(devnull, 2);
            execvp(argv[dash + 1], argv + dash + 1);
            _exit(127);
        }
        double t1 = 0;
        for (;;) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
            close(fd);
            if (ok) { t1 = now(); break; }
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                fprintf(stderr, "startup_time: %s exited (status %d) before listening\n", argv[dash + 1], status);
                return 1;
            }
            if (now() - t0 > timeout) {
                fprintf(stderr, "startup_time: %s did not listen on port %d within %g s\n", argv[dash + 1], port, timeout);
                stop(pid);
                return 1;
            }
            usleep(100);
        }
        ms[r] = (t1 - t0) * 1e3;
        stop(pid);
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp);
    double median = runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2;
    printf("RESULT startup runs=%d median_ms=%.1f min_ms=%.1f max_ms=%.1f\n", runs, median, ms[0], ms[runs - 1]);
    return 0;
}
