/*
 * rawfd.c: a tiny Lua 5.4 C module for the core benchmarks, standing in for the
 * socket API that does not exist yet. Built by scripts/bench:
 *
 *   cc -O2 -shared -fPIC -I/usr/include/lua5.4 -o rawfd.so rawfd.c
 *
 * rawfd.socketpair()   -> fd1, fd2 (AF_UNIX SOCK_STREAM, nonblocking, close-on-exec)
 * rawfd.read(fd, n)    -> string (may be shorter than n; "" at end of file) or nil, errno
 * rawfd.write(fd, s)   -> bytes written or nil, errno
 * rawfd.close(fd)      -> true or nil, errno
 * rawfd.monotonic()    -> seconds (CLOCK_MONOTONIC, float)
 *
 * Reads of up to 64 KiB use a stack buffer, and short strings are interned by Lua,
 * so a 1-byte ping-pong allocates nothing per call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fail(lua_State *L) {
    int e = errno;
    lua_pushnil(L);
    lua_pushinteger(L, e);
    return 2;
}

static int l_socketpair(lua_State *L) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return fail(L);
    lua_pushinteger(L, sv[0]);
    lua_pushinteger(L, sv[1]);
    return 2;
}

static int l_read(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    char stackbuf[65536];
    char *buf = stackbuf;
    if (n < 0) return luaL_argerror(L, 2, "negative count");
    if (n > (lua_Integer)sizeof stackbuf) {
        buf = malloc((size_t)n);
        if (!buf) return luaL_error(L, "out of memory");
    }
    ssize_t r = read(fd, buf, (size_t)n);
    if (r < 0) {
        if (buf != stackbuf) free(buf);
        return fail(L);
    }
    lua_pushlstring(L, buf, (size_t)r);
    if (buf != stackbuf) free(buf);
    return 1;
}

static int l_write(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    ssize_t w = write(fd, s, len);
    if (w < 0) return fail(L);
    lua_pushinteger(L, w);
    return 1;
}

static int l_close(lua_State *L) {
    if (close((int)luaL_checkinteger(L, 1)) != 0) return fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_monotonic(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

int luaopen_rawfd(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"socketpair", l_socketpair}, {"read", l_read}, {"write", l_write},
        {"close", l_close}, {"monotonic", l_monotonic}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
