#include "gsock_http_fields.h"
#include "gsock_shims.h"
#include "http_parser.h"
#include <stdlib.h>
#include <string.h>

/// 0 when out of memory.
static int append_bytes(struct gs_http_fields *o, const char *p, size_t n) {
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n) cap *= 2;
        char *data = realloc(o->data, cap);
        if (!data) return 0;
        o->data = data;
        o->cap = cap;
    }
    memcpy(o->data + o->len, p, n);
    o->len += n;
    return 1;
}

static void append(lua_State *L, struct gs_http_fields *o, const char *p, size_t n) {
    if (!append_bytes(o, p, n)) luaL_error(L, "not enough memory");
}

/// What a field's value tells the server (its framing, Date, Connection: close); 0 for a
/// Content-Length that is no length.
static int note_field(struct gs_http_fields *o, int kind, const char *value, size_t len) {
    switch (kind) {
    case GS_HTTP_FIELD_CONTENT_LENGTH: {
        uint64_t n = 0;
        if (gs_http_parse_content_length(value, len, &n) != 0) return 0;
        o->content_length = (long long)n;
        break;
    }
    case GS_HTTP_FIELD_TRANSFER_ENCODING: o->transfer_encoding = 1; break;
    case GS_HTTP_FIELD_DATE: o->date = 1; break;
    case GS_HTTP_FIELD_CONNECTION:
        if (gs_http_list_has(value, len, "close", 5)) o->connection_close = 1;
        break;
    default: break;
    }
    return 1;
}

/// One "name: value" line from the value at `v`.
static void append_field(lua_State *L, struct gs_http_fields *o, const char *name, size_t name_len, int kind,
                         int v) {
    int type = lua_type(L, v);
    if (type != LUA_TSTRING && type != LUA_TNUMBER)
        luaL_error(L, "res.headers['%s']: a string expected, got %s", name, luaL_typename(L, v));
    lua_pushvalue(L, v);  // a number becomes a string on the copy, not in the table
    size_t len;
    const char *value = lua_tolstring(L, -1, &len);
    if (!gs_http_value_safe(value, len)) luaL_error(L, "res.headers['%s']: the value holds CR, LF or NUL", name);
    if (!note_field(o, kind, value, len))
        luaL_error(L, "res.headers['%s']: a length expected, got '%s'", name, value);
    append(L, o, name, name_len);
    append(L, o, ": ", 2);
    append(L, o, value, len);
    append(L, o, "\r\n", 2);
    lua_pop(L, 1);
}

/// (table, out) under gs_pcall.
static int append_fields(lua_State *L) {
    struct gs_http_fields *o = lua_touserdata(L, 2);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "res.headers: field names must be strings, got %s", luaL_typename(L, -2));
        size_t name_len;
        const char *name = lua_tolstring(L, -2, &name_len);
        int kind = gs_http_response_field(name, name_len);
        if (kind == GS_HTTP_FIELD_INVALID) return luaL_error(L, "res.headers: '%s' is not a valid field name", name);
        if (lua_type(L, -1) == LUA_TTABLE) {
            for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
                append_field(L, o, name, name_len, kind, lua_gettop(L));
                lua_pop(L, 1);
            }
            lua_pop(L, 1);  // the nil
        } else {
            append_field(L, o, name, name_len, kind, lua_gettop(L));
        }
        lua_pop(L, 1);
    }
    return 0;
}

/// The string at `v` as one "name: value" line; 0 when it needs append_field (not a
/// string, an unsafe value, a bad length) or memory ran out.
static int append_plain_field(lua_State *L, struct gs_http_fields *o, const char *name, size_t name_len, int kind,
                              int v) {
    if (lua_type(L, v) != LUA_TSTRING) return 0;
    size_t len;
    const char *value = lua_tolstring(L, v, &len);
    return gs_http_value_safe(value, len) && note_field(o, kind, value, len) && append_bytes(o, name, name_len) &&
           append_bytes(o, ": ", 2) && append_bytes(o, value, len) && append_bytes(o, "\r\n", 2);
}

/// The common case without a protected call (most of a response's cost once): valid
/// string names with string values or arrays of them. 1 when done; 0 when something
/// needs append_fields (a number to convert, an error to raise), the stack as it was.
/// Nothing here raises: lua_next cannot fail on a table nothing modifies, and nothing
/// allocates Lua memory.
static int append_plain_fields(lua_State *L, int t, struct gs_http_fields *o) {
    if (!lua_checkstack(L, 4)) return 0;
    int top = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING) goto full;
        size_t name_len;
        const char *name = lua_tolstring(L, -2, &name_len);
        int kind = gs_http_response_field(name, name_len);
        if (kind == GS_HTTP_FIELD_INVALID) goto full;
        if (lua_type(L, -1) == LUA_TTABLE) {
            for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
                if (!append_plain_field(L, o, name, name_len, kind, lua_gettop(L))) goto full;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);  // the nil
        } else if (!append_plain_field(L, o, name, name_len, kind, lua_gettop(L))) {
            goto full;
        }
        lua_pop(L, 1);
    }
    return 1;
full:
    lua_settop(L, top);
    return 0;
}

/// Whether the table at `t` holds exactly the cached strings, in the cached order.
static int matches_cache(lua_State *L, int t, struct gs_http_fields *o) {
    if (!lua_checkstack(L, 3)) return 0;
    int top = lua_gettop(L), i = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (i == o->cached_count || lua_type(L, -1) != LUA_TSTRING || lua_topointer(L, -2) != o->cached[2 * i]
            || lua_topointer(L, -1) != o->cached[2 * i + 1]) {
            lua_settop(L, top);
            return 0;
        }
        i++;
        lua_pop(L, 1);
    }
    return i == o->cached_count;
}

/// Caches the rendering just made of the table at `t` when its names and values are all
/// strings (at most GS_HTTP_CACHED_FIELDS), anchoring them in an array.
static void remember(lua_State *L, int t, struct gs_http_fields *o) {
    if (!lua_checkstack(L, 4)) return;
    int top = lua_gettop(L), n = 0;
    lua_createtable(L, 2 * GS_HTTP_CACHED_FIELDS, 0);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (n == GS_HTTP_CACHED_FIELDS || lua_type(L, -1) != LUA_TSTRING) {
            lua_settop(L, top);
            return;
        }
        o->cached[2 * n] = lua_topointer(L, -2);
        o->cached[2 * n + 1] = lua_topointer(L, -1);
        lua_rawseti(L, top + 1, 2 * n + 2);
        lua_pushvalue(L, -1);
        lua_rawseti(L, top + 1, 2 * n + 1);
        n++;
    }
    if (o->anchor > 0) luaL_unref(L, LUA_REGISTRYINDEX, o->anchor);
    o->anchor = luaL_ref(L, LUA_REGISTRYINDEX);   // pops the array
    o->cached_count = n;
    o->cached_table = lua_topointer(L, t);
}

static void reset(struct gs_http_fields *out) {
    out->len = 0;
    out->content_length = -1;
    out->transfer_encoding = out->date = out->connection_close = 0;
}

int gs_http_append_fields(lua_State *L, int t, struct gs_http_fields *out) {
    t = lua_absindex(L, t);
    const void *table = lua_topointer(L, t);
    if (table == out->cached_table && matches_cache(L, t, out)) return LUA_OK;
    out->cached_table = NULL;
    reset(out);
    if (append_plain_fields(L, t, out)) {
        if (table == out->candidate) remember(L, t, out);
        out->candidate = table;
        return LUA_OK;
    }
    out->candidate = NULL;
    reset(out);
    lua_pushcfunction(L, append_fields);
    lua_pushvalue(L, t);
    lua_pushlightuserdata(L, out);
    return gs_pcall(L, 2, 0, 0);
}
