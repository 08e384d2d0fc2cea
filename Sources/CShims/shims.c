#define _GNU_SOURCE
#include "gsock_shims.h"
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <unistd.h>
#include <sys/prctl.h>

int gs_accept(int fd, uint64_t *peer) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    int client = accept4(fd, (struct sockaddr *)&address, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *peer = 0;
    if (client >= 0 && address.ss_family == AF_INET && length >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&address;
        *peer = (uint64_t)1 << 48 | (uint64_t)ntohl(in->sin_addr.s_addr) << 16 | ntohs(in->sin_port);
    }
    return client;
}

static char park_sentinel;
void *gs_park_sentinel(void) { return &park_sentinel; }

// Lua's small blocks (tables, their nodes, closures, short strings, userdata: most of what
// a request makes) come from free lists of 16-byte size classes up to 256 bytes. Lua says
// each block's size when it frees or resizes it, so a block needs no header. A request's
// objects are freed by the collector in bursts, which fill glibc's per-size caches
// (tcache, 7 blocks) and send the rest through its bins: malloc + free cost ~270
// instructions a pair there, ~20 here. Each list keeps at most GS_POOL_KEEP blocks (so
// at most ~4.5 MiB in all); beyond that blocks go back to free().
#define GS_POOL_MAX 256
#define GS_POOL_CLASSES (GS_POOL_MAX / 16)
#define GS_POOL_KEEP 2048

typedef struct gs_block { struct gs_block *next; } gs_block;
struct gs_pool {
    gs_block *free[GS_POOL_CLASSES];
    unsigned kept[GS_POOL_CLASSES];
};

/// The class of a block of 1...GS_POOL_MAX bytes; its blocks have (class + 1) * 16.
static inline int size_class(size_t n) { return (int)((n - 1) >> 4); }
static inline size_t class_size(size_t n) { return (size_t)(size_class(n) + 1) << 4; }

static void pool_free(struct gs_pool *pool, void *ptr, size_t size) {
    int c = size_class(size);
    if (pool->kept[c] >= GS_POOL_KEEP) {
        free(ptr);
        return;
    }
    gs_block *b = ptr;
    b->next = pool->free[c];
    pool->free[c] = b;
    pool->kept[c]++;
}

static void pool_drain(struct gs_pool *pool) {
    for (int c = 0; c < GS_POOL_CLASSES; c++) {
        while (pool->free[c]) {
            gs_block *b = pool->free[c];
            pool->free[c] = b->next;
            free(b);
        }
        pool->kept[c] = 0;
    }
}

/// A block of `nsize` bytes with `old` bytes of `ptr` (old 0: ptr is NULL). Every block of
/// at most GS_POOL_MAX bytes has its class's size, so it may go to a free list when freed.
static void *pool_resize(struct gs_pool *pool, void *ptr, size_t old, size_t nsize) {
    if (ptr == NULL) {
        if (nsize > GS_POOL_MAX) return malloc(nsize);
        int c = size_class(nsize);
        gs_block *b = pool->free[c];
        if (b == NULL) return malloc(class_size(nsize));
        pool->free[c] = b->next;
        pool->kept[c]--;
        return b;
    }
    if (old <= GS_POOL_MAX && nsize <= GS_POOL_MAX && size_class(old) == size_class(nsize)) return ptr;
    // A block that shrinks stays where it is (glibc's realloc does not fail then, as Lua
    // requires of a shrink).
    return realloc(ptr, nsize <= GS_POOL_MAX ? class_size(nsize) : nsize);
}

static void *gs_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    gs_state *st = (gs_state *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        if (ptr) {
            if (old <= GS_POOL_MAX) pool_free(st->pool, ptr, old); else free(ptr);
        }
        st->used -= old;
        return NULL;
    }
    // A failed allocation raises a memory error. While a Swift frame is live the raise
    // would longjmp through it, so the limit is only enforced when Lua code runs.
    if (st->limit && st->swift_depth == 0 && nsize > old && st->used - old + nsize > st->limit)
        return NULL;
    void *p = pool_resize(st->pool, ptr, old, nsize);
    if (p == NULL) {   // what the free lists hold goes back before Lua collects garbage
        pool_drain(st->pool);
        p = pool_resize(st->pool, ptr, old, nsize);
    }
    if (p) st->used = st->used - old + nsize;
    return p;
}

static int panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "gsockd: unprotected Lua error: %s\n", msg ? msg : "(error object is not a string)");
    return 0;  // Lua aborts
}

lua_State *gs_newstate(gs_state *st) {
    st->pool = calloc(1, sizeof *st->pool);
    if (st->pool == NULL) return NULL;
    lua_State *L = lua_newstate(gs_alloc, st);
    if (L == NULL) {
        free(st->pool);
        st->pool = NULL;
    }
    if (L) {
        lua_atpanic(L, panic);
        // Lua leaves the main thread's extra space uninitialised and copies it into every new thread.
        gs_setextraspace(L, NULL);
    }
    return L;
}

void gs_closestate(lua_State *L, gs_state *st) {
    lua_close(L);
    pool_drain(st->pool);
    free(st->pool);
    st->pool = NULL;
}

#ifdef DEBUG
// Debug builds check every body's stack when it returns: the N results it returns must
// be there, and so must the error value of a raise (a body returning 2 after pushing
// one hands Lua one of its own arguments instead). Lua's API checks cannot see this.
static void check_stack(lua_State *L, int base, int r) {
    int top = lua_gettop(L);
    if (r >= 0 ? top >= r : (r == GS_YIELD || top >= 1)) return;
    lua_Debug ar;
    const char *name = "?";
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) name = ar.name;
    fprintf(stderr, "gsockd: stack check: '%s' returned %d with %d values on the stack (%d on entry)\n",
            name, r, top, base);
    abort();
}
#define CHECK_STACK(L, base, r) check_stack(L, base, r)
#else
#define CHECK_STACK(L, base, r) ((void)0)
#endif

static int finish(lua_State *L, int status);

static int continuation(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    gs_body kont = (gs_body)ctx;
    gs_state *st = gs_getstate(L);
#ifdef DEBUG
    int base = lua_gettop(L);
#endif
    st->swift_depth++;
    int r = kont(L);
    st->swift_depth--;
    CHECK_STACK(L, base, r);
    return finish(L, r);
}

static int finish(lua_State *L, int r) {
    if (r >= 0) return r;
    gs_state *st = gs_getstate(L);
    switch (r) {
    case GS_RAISE_WHERE:
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
        return lua_error(L);
    case GS_ARGERROR:
        return luaL_argerror(L, st->arg, lua_tostring(L, -1));
    case GS_YIELD:
        lua_pushlightuserdata(L, &park_sentinel);
        return lua_yieldk(L, 1, (lua_KContext)st->kont, continuation);
    default:
        return lua_error(L);
    }
}


static int trampoline(lua_State *L) {
    gs_body body = (gs_body)lua_touserdata(L, lua_upvalueindex(1));
    gs_state *st = gs_getstate(L);
#ifdef DEBUG
    int base = lua_gettop(L);
#endif
    st->swift_depth++;
    int r = body(L);
    st->swift_depth--;
    CHECK_STACK(L, base, r);
    return finish(L, r);
}

// Calling a getfd() method may raise, so it happens here, before any Swift frame exists.
static int fd_trampoline(lua_State *L) {
    int t = lua_type(L, 1);
    if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
        if (lua_getfield(L, 1, "getfd") == LUA_TFUNCTION) {
            lua_pushvalue(L, 1);
            lua_call(L, 1, 1);
            lua_replace(L, 1);
        } else {
            lua_pop(L, 1);
        }
    }
    return trampoline(L);
}

// A wait for reading on an object whose dirty() is true (data already buffered, or
// decrypted by TLS) returns at once: no readiness of the descriptor would announce it.
static int fd_read_trampoline(lua_State *L) {
    int t = lua_type(L, 1);
    if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
        if (lua_getfield(L, 1, "dirty") == LUA_TFUNCTION) {
            lua_pushvalue(L, 1);
            lua_call(L, 1, 1);
            int dirty = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (dirty) return 0;
        } else {
            lua_pop(L, 1);
        }
    }
    return fd_trampoline(L);
}

void gs_pushbody(lua_State *L, gs_body body, int nup, int fdarg) {
    lua_pushlightuserdata(L, (void *)body);
    if (nup > 0) lua_insert(L, -nup - 1);
    lua_pushcclosure(L, fdarg == 2 ? fd_read_trampoline : fdarg ? fd_trampoline : trampoline, nup + 1);
}

int gs_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
    gs_state *st = gs_getstate(co);
    st->swift_depth--;
    int status = lua_resume(co, from, nargs, nres);
    st->swift_depth++;
    return status;
}

int gs_pcall(lua_State *L, int nargs, int nresults, int msgh) {
    gs_state *st = gs_getstate(L);
    st->swift_depth--;
    int status = lua_pcall(L, nargs, nresults, msgh);
    st->swift_depth++;
    return status;
}

int gs_rawset(lua_State *L, int t) {
    t = lua_absindex(L, t);
    int kt = lua_type(L, -2);
    if (kt == LUA_TNIL || (kt == LUA_TNUMBER && !lua_isinteger(L, -2) && lua_tonumber(L, -2) != lua_tonumber(L, -2))) {
        lua_pop(L, 2);
        return 0;
    }
    lua_rawset(L, t);
    return 1;
}

static int next_protected(lua_State *L) {
    // (table, key) -> key, value or nothing
    return lua_next(L, 1) ? 2 : 0;
}

int gs_next(lua_State *L, int t) {
    t = lua_absindex(L, t);
    int top = lua_gettop(L) - 1;  // below the key
    lua_pushcfunction(L, next_protected);
    lua_pushvalue(L, t);
    lua_rotate(L, -3, 2);  // function, table, key
    if (gs_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK || lua_gettop(L) == top) {
        lua_settop(L, top);
        return 0;
    }
    return 1;
}

int gs_resetthread(lua_State *co) {
    gs_state *st = gs_getstate(co);
    st->swift_depth--;
    int status = lua_resetthread(co);
    st->swift_depth++;
    return status;
}

void gs_inherit_hook(lua_State *co, lua_State *from) {
    lua_sethook(co, lua_gethook(from), lua_gethookmask(from), lua_gethookcount(from));
}

int gs_first_call_locals(lua_State *co, lua_State *to, int n) {
    lua_Debug ar;
    int level = 0;
    if (!lua_getstack(co, 0, &ar)) return 0;
    while (lua_getstack(co, level + 1, &ar)) level++;
    lua_getstack(co, level, &ar);
    int pushed = 0;
    for (int i = 1; i <= n; i++) {
        if (!lua_checkstack(co, 1) || !lua_checkstack(to, 1)) break;
        if (lua_getlocal(co, &ar, i) == NULL) break;
        lua_xmove(co, to, 1);
        pushed++;
    }
    return pushed;
}

int gs_tostring(lua_State *L) {
    luaL_tolstring(L, 1, NULL);
    return 1;
}

int gs_traceback(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    const char *msg = lua_tostring(L, 2);
    luaL_traceback(L, co ? co : L, msg, 0);
    return 1;
}

int gs_openlibs(lua_State *L) {
    luaL_openlibs(L);
    return 0;
}

int gs_msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
        else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

// MARK: - The runaway-fiber watchdog

double gs_coarse_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static gs_state *watched;
static double watch_limit;
static int watch_action;
static gs_runaway_report watch_report;
static pthread_t loop_thread;
static volatile unsigned long flagged_resume;  // the run the watchdog signalled about
#define GS_WATCHDOG_SIGNAL (SIGRTMIN + 3)

static unsigned long raised_resume = (unsigned long)-1;  // the run last raised in (loop thread only)

static void runaway_hook(lua_State *L, lua_Debug *ar) {
    lua_sethook(L, NULL, 0, 0);
    gs_state *st = watched;
    if (!st || st->running != L || st->resumes != flagged_resume) return;  // it yielded since
    double elapsed = gs_coarse_now() - st->running_since;
    if (elapsed < watch_limit) return;
    if (watch_action == GS_RUNAWAY_ERROR && raised_resume == st->resumes && lua_isyieldable(L)) {
        // It caught the first error and ran on: stop it for good. Only a count hook may
        // yield; the scheduler ends a fiber that yields this way (see runaway_stopped).
        if (ar->event != LUA_HOOKCOUNT) {
            lua_sethook(L, runaway_hook, LUA_MASKCOUNT, 1);
            return;
        }
        st->runaway_stopped = 1;
        lua_yield(L, 0);
        return;
    }
    char message[128];
    snprintf(message, sizeof message, "ran for %.2f s without yielding (max_run_time is %g s)%s",
             elapsed, watch_limit, watch_action == GS_RUNAWAY_ERROR ? "" : "; it goes on");
    if (watch_action == GS_RUNAWAY_ERROR) {
        if (raised_resume != st->resumes) st->runaways++;
        raised_resume = st->resumes;
        luaL_error(L, "fiber %s", message);
        return;
    }
    st->runaways++;
    lua_pushstring(L, message);
    luaL_traceback(L, L, lua_tostring(L, -1), 0);
    st->swift_depth++;
    watch_report(L, lua_tostring(L, -1));
    st->swift_depth--;
    lua_pop(L, 2);
}

// As lua.c's SIGINT handler does: setting a hook is what Lua allows from a signal handler.
static void watchdog_signalled(int signum) {
    (void)signum;
    gs_state *st = watched;
    lua_State *L = st ? st->running : NULL;
    if (L && st->resumes == flagged_resume)
        lua_sethook(L, runaway_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void *watchdog(void *arg) {
    (void)arg;
    struct timespec pause;
    double step = watch_limit / 4 < 0.05 ? 0.05 : watch_limit / 4;
    pause.tv_sec = (time_t)step;
    pause.tv_nsec = (long)((step - (double)pause.tv_sec) * 1e9);
    unsigned long reported = (unsigned long)-1;
    double signalled_at = 0;
    for (;;) {
        nanosleep(&pause, NULL);
        gs_state *st = watched;
        unsigned long resumes = st->resumes;
        double now = gs_coarse_now();
        if (!st->running || now - st->running_since <= watch_limit) continue;
        // A report is made once per run. An error is raised again at every max_run_time:
        // a fiber that catches it with pcall and spins on must not freeze the loop for good.
        if (resumes != reported || (watch_action == GS_RUNAWAY_ERROR && now - signalled_at >= watch_limit)) {
            reported = resumes;
            signalled_at = now;
            flagged_resume = resumes;
            pthread_kill(loop_thread, GS_WATCHDOG_SIGNAL);
        }
    }
    return NULL;
}

int gs_watchdog_start(gs_state *st, double limit, int action, gs_runaway_report report) {
    if (watched) return -1;
    watched = st;
    watch_limit = limit;
    watch_action = action;
    watch_report = report;
    loop_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = watchdog_signalled;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(GS_WATCHDOG_SIGNAL, &sa, NULL) != 0) return -1;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&thread, &attr, watchdog, NULL);
    pthread_attr_destroy(&attr);
    return r;
}

ssize_t gs_send_message(int sock, const void *buf, size_t len, int fd) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char space[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.space;
        msg.msg_controllen = sizeof control.space;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do n = sendmsg(sock, &msg, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    return n;
}

ssize_t gs_recv_message(int sock, void *buf, size_t cap, int *fd) {
    struct iovec iov = { .iov_base = buf, .iov_len = cap };
    union { char space[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                          .msg_controllen = sizeof control.space };
    *fd = -1;
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(fd, CMSG_DATA(c), sizeof(int));
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        if (*fd >= 0) close(*fd);
        *fd = -1;
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

int gs_set_parent_death_signal(int signum) { return prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0); }
