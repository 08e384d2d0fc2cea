// Writing a response head's fields from the handler's table (SPEC §11), in C: the
// traversal uses lua_next, which Swift may not call, under one protected call for the
// whole table instead of one per field.
#ifndef GSOCK_HTTP_FIELDS_H
#define GSOCK_HTTP_FIELDS_H

#include <lua5.4/lua.h>
#include <stddef.h>

/// The "Name: value\r\n" lines of a head, and what the server must know of them.
struct gs_http_fields {
    char *data;               ///< the lines (grown with realloc; the owner frees it)
    size_t len, cap;
    long long content_length; ///< -1 when there is no Content-Length field
    int transfer_encoding;    ///< a Transfer-Encoding field was given
    int date;                 ///< a Date field was given
    int connection_close;     ///< a Connection field lists "close"
};

/// Sets `out`'s length to 0 and appends the fields of the table at `t`: a string key is a
/// field name (a token), a value a string or a number, or an array of them (one line
/// each). Returns LUA_OK, or another status with a message naming the bad field on top
/// of the stack (nothing is raised).
int gs_http_append_fields(lua_State *L, int t, struct gs_http_fields *out);

#endif
