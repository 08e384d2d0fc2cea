// gsockd's C next to Lua: wrappers for libev and Lua macros Swift cannot import, and the
// trampolines through which every Lua-callable Swift function runs (gsock_http_fields.h
// holds the one traversal of a Lua table done in C for speed).
//
// Lua raises errors and yields with longjmp. A longjmp across a Swift frame
// corrupts Swift's state, so Swift bodies never raise or yield themselves: they
// return a status, and the C trampoline that called them raises or yields only
// after the Swift frame is gone.
#ifndef GSOCK_SHIMS_H
#define GSOCK_SHIMS_H

#include <lua5.4/lua.h>
#include <lua5.4/lauxlib.h>
#include <lua5.4/lualib.h>
#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>

/// What a Swift body returns: a count of results (>= 0), or one of these.
enum {
    GS_RAISE = -1,        ///< raise the value on top of the stack
    GS_RAISE_WHERE = -2,  ///< raise the string on top, prefixed with the caller's "file:line:"
    GS_ARGERROR = -3,     ///< argument error: message on top, index in gs_state.arg
    GS_YIELD = -4,        ///< park the fiber: yield to the scheduler, continue in gs_state.kont
};

typedef int (*gs_body)(lua_State *L);

/// Per-Lua-state data, reached from any thread of the state through the allocator's userdata.
typedef struct gs_state {
    size_t used;          ///< bytes allocated by Lua
    size_t limit;         ///< 0: no limit
    int swift_depth;      ///< > 0 while Swift frames are live: allocation must not fail then
    int arg;              ///< argument index for GS_ARGERROR
    gs_body kont;         ///< continuation for GS_YIELD
    void *runtime;        ///< the Runtime, unretained
    // The runaway-fiber watchdog (see gs_watchdog_start). Written by the loop thread on
    // every resume, read by the watchdog thread.
    lua_State *volatile running;        ///< the fiber thread being resumed, or NULL
    volatile unsigned long resumes;     ///< count of resumes, to tell one run from the next
    volatile double running_since;      ///< monotonic seconds when `running` was resumed
    /// Set by the watchdog's hook when it yielded out of a fiber that ran on after its
    /// error (GS_RUNAWAY_ERROR): the scheduler then ends that fiber. Loop thread only.
    int runaway_stopped;
    /// Runs the watchdog found past the limit (counted once per run; loop thread only).
    unsigned long runaways;
    /// The allocator's free lists of small blocks (made by gs_newstate).
    struct gs_pool *pool;
} gs_state;

/// A new Lua state whose allocator enforces st->limit (outside Swift frames) and counts bytes.
lua_State *gs_newstate(gs_state *st);
/// Closes a state made by gs_newstate and frees what its allocator kept.
void gs_closestate(lua_State *L, gs_state *st);

static inline gs_state *gs_getstate(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return (gs_state *)ud;
}

/// Pushes a Lua function that runs `body` through the trampoline, with `nup` upvalues
/// taken from the stack (they become upvalues 2...nup+1; upvalue 1 is the body).
/// With `fdarg`, argument 1 is first replaced by `arg1:getfd()` unless it is a number; with
/// `fdarg` 2 (read waits), an object whose `dirty()` is true returns at once instead.
void gs_pushbody(lua_State *L, gs_body body, int nup, int fdarg);

/// The light userdata a scheduler yield carries, so that yields of user coroutines
/// can be told from it.
void *gs_park_sentinel(void);

/// lua_resume and lua_pcall with the allocator told that no Swift frame is on top.
int gs_resume(lua_State *co, lua_State *from, int nargs, int *nres);
int gs_pcall(lua_State *L, int nargs, int nresults, int msgh);
int gs_resetthread(lua_State *co);
/// Gives `co` the debug hook of `from`, as lua_newthread does for a new thread (a reused
/// thread must not keep a hook set by the fiber that had it before).
void gs_inherit_hook(lua_State *co, lua_State *from);
/// Pushes on `to` the values of the first `n` locals (the arguments, as they are now) of the
/// first call on `co`, a thread that raised: its stack is not unwound, but the API indexes
/// it from the frame that raised. Returns how many it pushed. Never raises.
int gs_first_call_locals(lua_State *co, lua_State *to, int n);

/// Lua C functions that Swift calls through gs_pcall because they may raise.
int gs_tostring(lua_State *L);      ///< (v) -> luaL_tolstring(v)
int gs_traceback(lua_State *L);     ///< (thread, msg) -> msg .. traceback of thread
int gs_openlibs(lua_State *L);      ///< luaL_openlibs
int gs_msghandler(lua_State *L);    ///< (err) -> err, or "tostring(err)\ntraceback" for strings

/// Raw table access that cannot raise (lua_rawset raises on a nil or NaN key, lua_next on
/// a key that is not in the table): the only forms of them Swift may call.
/// t[k] = v with k and v on top (popped); a nil or NaN key pops both and returns 0.
int gs_rawset(lua_State *L, int t);
/// lua_next run in protected mode: 1 with key and value pushed, 0 at the end (or when the
/// key is no longer in the table; the key is popped either way).
int gs_next(lua_State *L, int t);

/// Monotonic seconds from a coarse clock (a few ms of resolution; no syscall).
double gs_coarse_now(void);

/// What the watchdog does to a fiber that runs longer than its limit without yielding.
enum { GS_RUNAWAY_LOG = 0, GS_RUNAWAY_ERROR = 1 };
typedef void (*gs_runaway_report)(lua_State *L, const char *traceback);

/// Starts the process's one watchdog thread for `st`: when a fiber has run for more than
/// `limit` seconds without yielding, the loop thread gets a signal whose handler sets a
/// one-shot hook on that fiber; the hook raises an error in it (GS_RUNAWAY_ERROR) or
/// passes its traceback to `report` (GS_RUNAWAY_LOG). Until then it costs nothing.
/// An error is raised again at every further `limit` of the same run; a fiber that
/// caught it and still runs is then stopped (the hook yields, the scheduler ends it).
int gs_watchdog_start(gs_state *st, double limit, int action, gs_runaway_report report);

/// accept4 with non-blocking, close-on-exec descriptors (Swift does not see accept4).
/// `*peer` is the peer of an IPv4 connection, packed as 1 << 48 | address << 16 | port
/// (what accept4 returns anyway: no getpeername needed), else 0.
int gs_accept(int fd, uint64_t *peer);

// Between a supervisor and its workers (SOCK_SEQPACKET): one message, with a descriptor
// passed along (SCM_RIGHTS) when fd >= 0. gs_recv_message returns the message's length
// (-1 and errno on failure, 0 at EOF); *fd is the descriptor received (close on exec), or -1.
ssize_t gs_send_message(int sock, const void *buf, size_t len, int fd);
ssize_t gs_recv_message(int sock, void *buf, size_t cap, int *fd);
/// prctl(PR_SET_PDEATHSIG, signum): the signal this process gets when its parent dies.
int gs_set_parent_death_signal(int signum);

// libev macros.
typedef void (*gs_io_cb)(struct ev_loop *, ev_io *, int);
typedef void (*gs_timer_cb)(struct ev_loop *, ev_timer *, int);
typedef void (*gs_idle_cb)(struct ev_loop *, ev_idle *, int);
typedef void (*gs_check_cb)(struct ev_loop *, ev_check *, int);
typedef void (*gs_async_cb)(struct ev_loop *, ev_async *, int);
typedef void (*gs_signal_cb)(struct ev_loop *, ev_signal *, int);

static inline void gs_io_init(ev_io *w, gs_io_cb cb, int fd, int events) { ev_io_init(w, cb, fd, events); }
static inline void gs_io_set(ev_io *w, int fd, int events) { ev_io_set(w, fd, events); }
static inline void gs_timer_init(ev_timer *w, gs_timer_cb cb, double after) { ev_timer_init(w, cb, after, 0.); }
static inline void gs_timer_set(ev_timer *w, double after) { ev_timer_set(w, after, 0.); }
static inline void gs_idle_init(ev_idle *w, gs_idle_cb cb) { ev_idle_init(w, cb); }
static inline void gs_check_init(ev_check *w, gs_check_cb cb) { ev_check_init(w, cb); }
static inline void gs_async_init(ev_async *w, gs_async_cb cb) { ev_async_init(w, cb); }
static inline void gs_signal_init(ev_signal *w, gs_signal_cb cb, int signum) { ev_signal_init(w, cb, signum); }
static inline void gs_set_priority(void *w, int pri) { ev_set_priority((ev_watcher *)w, pri); }
typedef void (*gs_child_cb)(struct ev_loop *, ev_child *, int);
static inline void gs_child_init(ev_child *w, gs_child_cb cb, int pid) { ev_child_init(w, cb, pid, 0); }
static inline int gs_wifexited(int status) { return WIFEXITED(status); }
static inline int gs_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int gs_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int gs_wtermsig(int status) { return WTERMSIG(status); }
static inline int gs_is_pending(const void *w) { return ev_is_pending((const ev_watcher *)w); }
static inline int gs_is_active(const void *w) { return ev_is_active((const ev_watcher *)w); }
static inline struct ev_loop *gs_default_loop(void) { return ev_default_loop(EVFLAG_AUTO); }

// Lua macros.
static inline void gs_pop(lua_State *L, int n) { lua_settop(L, -(n) - 1); }
static inline void gs_remove(lua_State *L, int i) { lua_remove(L, i); }
static inline void *gs_extraspace(lua_State *L) { return *(void **)lua_getextraspace(L); }
static inline void gs_setextraspace(lua_State *L, void *p) { *(void **)lua_getextraspace(L) = p; }
/// The registry has no metatable, so this lua_getfield cannot run a metamethod.
static inline int gs_getmetatable(lua_State *L, const char *name) { return lua_getfield(L, LUA_REGISTRYINDEX, name); }
static inline void gs_pushcfunction(lua_State *L, lua_CFunction f) { lua_pushcfunction(L, f); }
enum { GS_EV_READ = EV_READ, GS_EV_WRITE = EV_WRITE, GS_EV_ERROR = EV_ERROR,
       GS_EV_MINPRI = EV_MINPRI };
/// Not from libev: the revents of a descriptor wait woken because the runtime closed the descriptor.
enum { GS_EV_CLOSED = EV_CUSTOM };
static inline int gs_upvalueindex(int i) { return lua_upvalueindex(i); }
static inline int gs_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline int gs_isnoneornil(lua_State *L, int i) { return lua_type(L, i) <= 0; }
static inline const char *gs_typename_at(lua_State *L, int i) { return lua_typename(L, lua_type(L, i)); }
/// The release of the Lua library linked in ("5.4.4"), for `gsockd --version`.
static inline const char *gs_lua_release(void) { return LUA_VERSION_MAJOR "." LUA_VERSION_MINOR "." LUA_VERSION_RELEASE; }

#endif
