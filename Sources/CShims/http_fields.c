#include "gsock_http_fields.h"
#include "gsock_shims.h"
#include "http_parser.h"
#include <stdlib.h>
#include <string.h>

static void append(lua_State *L, struct gs_http_fields *o, const char *p, size_t n) {
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n) cap *= 2;
        char *data = realloc(o->data, cap);
        if (!data) luaL_error(L, "not enough memory");
        o->data = data;
        o->cap = cap;
    }
    memcpy(o->data + o->len, p, n);
    o->len += n;
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
    switch (kind) {
    case GS_HTTP_FIELD_CONTENT_LENGTH: {
        uint64_t n = 0;
        if (gs_http_parse_content_length(value, len, &n) != 0)
            luaL_error(L, "res.headers['%s']: a length expected, got '%s'", name, value);
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

int gs_http_append_fields(lua_State *L, int t, struct gs_http_fields *out) {
    out->len = 0;
    out->content_length = -1;
    out->transfer_encoding = out->date = out->connection_close = 0;
    t = lua_absindex(L, t);
    lua_pushcfunction(L, append_fields);
    lua_pushvalue(L, t);
    lua_pushlightuserdata(L, out);
    return gs_pcall(L, 2, 0, 0);
}
