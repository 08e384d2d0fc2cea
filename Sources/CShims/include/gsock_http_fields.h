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
    // What the lines above are for, when they came from a table of at most
    // GS_HTTP_CACHED_FIELDS string names and values seen on two heads in a row (a handler's
    // constant headers table): the table and its strings, in lua_next's order. The strings
    // are anchored (a registry reference to an array of them, `anchor`, 0 for none), so
    // the same addresses are the same strings.
    const void *cached_table;
    const void *candidate;    ///< the table of the last head, to cache when it comes again
    int cached_count;
    int anchor;
    const void *cached[2 * 16];
};

#define GS_HTTP_CACHED_FIELDS 16

/// Sets `out`'s length to 0 and appends the fields of the table at `t`: a string key is a
/// field name (a token), a value a string or a number, or an array of them (one line
/// each). Returns LUA_OK, or another status with a message naming the bad field on top
/// of the stack (nothing is raised). A table that holds the same strings as the one
/// before it leaves `out` as it was.
int gs_http_append_fields(lua_State *L, int t, struct gs_http_fields *out);

#endif
