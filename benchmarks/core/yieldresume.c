/*
 * yieldresume.c: the C baseline for a fiber switch (pingpong.lua's sleep0 variants).
 *
 * K Lua coroutines (default 2) each run `for i = 1, n do y() end`, where y is a C
 * function that yields through lua_yieldk with a continuation, carrying one light
 * userdata, as gsockd's trampoline does; the scheduler pops the yielded value and
 * resumes the next coroutine. Two schedulers:
 *
 *   bare   a C loop resuming the coroutines in turn: the floor of a Lua yield/resume
 *   libev  gsockd's structure: an ev_idle keeps the loop from blocking and an ev_check
 *          (lowest priority) resumes every ready coroutine once per loop iteration,
 *          so each iteration also pays one epoll_wait(0)
 *
 *   cc -O2 -I/usr/include/lua5.4 -o yieldresume yieldresume.c -llua5.4 -lev
 *   ./yieldresume MODE [SWITCHES [K]]
 *
 * Prints: "RESULT c-yield-MODE n=SWITCHES seconds=S ns_per_switch=X".
 */
#define _GNU_SOURCE
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char sentinel;

static int y_cont(lua_State *L, int status, lua_KContext ctx) {
    (void)L; (void)status; (void)ctx;
    return 0;
}

static int y(lua_State *L) {
    lua_pushlightuserdata(L, &sentinel);
    return lua_yieldk(L, 1, 0, y_cont);
}

static lua_State **cos;
static int k, alive;
static long switches;

/* Resumes co once; returns 0 when it has finished. */
static int step(lua_State *co) {
    int nres = 0;
    int status = lua_resume(co, NULL, 0, &nres);
    switches++;
    if (status == LUA_YIELD) {
        lua_pop(co, nres);
        return 1;
    }
    if (status != LUA_OK) {
        fprintf(stderr, "yieldresume: %s\n", lua_tostring(co, -1));
        exit(1);
    }
    return 0;
}

static void check_cb(struct ev_loop *loop, ev_check *w, int revents) {
    (void)w; (void)revents;
    for (int i = 0; i < k; i++) {
        if (cos[i] && !step(cos[i])) {
            cos[i] = NULL;
            alive--;
        }
    }
    if (alive == 0) ev_break(loop, EVBREAK_ALL);
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents) { (void)loop; (void)w; (void)revents; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "bare";
    long total = argc > 2 ? atol(argv[2]) : 1000000;
    k = argc > 3 ? atoi(argv[3]) : 2;
    if (k < 1) k = 1;
    long per = total / k;
    int libev = strcmp(mode, "libev") == 0;
    if (!libev && strcmp(mode, "bare") != 0) {
        fprintf(stderr, "usage: yieldresume bare|libev [SWITCHES [K]]\n");
        return 2;
    }

    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadstring(L, "local y, n = ... for _ = 1, n do y() end") != LUA_OK) return 1;
    int chunk = lua_gettop(L);
    cos = calloc((size_t)k, sizeof *cos);
    for (int i = 0; i < k; i++) {
        cos[i] = lua_newthread(L);
        luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pushvalue(L, chunk);
        lua_xmove(L, cos[i], 1);
        lua_pushcfunction(cos[i], y);
        lua_pushinteger(cos[i], per);
    }
    /* First resume starts each body (passing its two arguments) up to its first yield. */
    for (int i = 0; i < k; i++) {
        int nres;
        if (lua_resume(cos[i], NULL, 2, &nres) != LUA_YIELD) return 1;
        lua_pop(cos[i], nres);
    }
    alive = k;
    switches = 0;

    double t0 = now();
    if (libev) {
        struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
        ev_idle idle;
        ev_check check;
        ev_idle_init(&idle, idle_cb);
        ev_check_init(&check, check_cb);
        ev_set_priority(&check, EV_MINPRI);
        ev_idle_start(loop, &idle);
        ev_check_start(loop, &check);
        ev_run(loop, 0);
    } else {
        while (alive > 0) {
            for (int i = 0; i < k; i++) {
                if (cos[i] && !step(cos[i])) {
                    cos[i] = NULL;
                    alive--;
                }
            }
        }
    }
    double t = now() - t0;
    printf("RESULT c-yield-%s n=%ld seconds=%.6f ns_per_switch=%.1f\n", mode, switches, t, t * 1e9 / switches);
    lua_close(L);
    return 0;
}
