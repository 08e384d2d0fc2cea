// gsockd's HTTP/1.1 request parser (SPEC §11): stateless, zero-copy, allocation-free.
//
// The head parser reads a request line and header fields out of the receive buffer and
// reports them as offsets into it, so the server makes a Lua string only when a handler
// reads a field. It returns the length of a complete head, GS_HTTP_INCOMPLETE while the
// head is still arriving, or one error per status the server answers (400, 414, 431,
// 505). After more bytes arrive, the caller parses the whole buffer again and passes the
// length it had before as `last_len`: the parser then looks for the end of the head in
// the new bytes only and answers GS_HTTP_INCOMPLETE without rescanning the rest (a slow
// client costs one pass over its head, not one per read).
//
// The helpers below it are what a server needs next: framing of the body (Content-Length,
// Transfer-Encoding, and the request-smuggling shapes between them), an in-place
// incremental chunked decoder, percent-decoding of the path, and field-name and list
// comparisons.
//
// Strictness (RFC 9112, where a lenient reading lets two parsers see two different
// requests): the request line is exactly `method SP request-target SP HTTP/d.d` and a
// line end; the method and field names are tokens; a field name is followed by ':' with
// no whitespace between; a line that starts with whitespace (obs-fold, or whitespace
// before the first field) is refused; field values may hold VCHAR, obs-text (0x80-0xFF),
// SP and HTAB only; a CR is accepted only just before an LF. Leading empty lines before
// the request line are skipped (RFC 9112 §2.2); they count against `max_request_line`.
//
// Line ends in the head: CRLF, and a bare LF too, as nginx, h11 and picohttpparser accept
// (RFC 9112 §2.2 allows it for the start line and fields; a bare CR, the dangerous one, is
// always refused). GS_HTTP_STRICT_CRLF refuses a bare LF with GS_HTTP_BAD_REQUEST. In a
// chunked body every line must end in CRLF (§7.1; §2.2's leniency does not reach it, and
// chunk line ends read two ways are a known smuggling vector, so there it is never taken).
//
// The request target may hold any byte in 0x21-0x7E and 0x80-0xFF (raw UTF-8 paths are
// taken, as nginx takes them); '#' is not special. Its form is reported, not enforced
// against the method: that is the server's business.
#ifndef GS_HTTP_PARSER_H
#define GS_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Results. A result >= 0 is a length; these are the others, each with the status a
/// server answers it with (gs_http_status).
enum {
    GS_HTTP_INCOMPLETE = -2,           ///< need more bytes
    GS_HTTP_BAD_REQUEST = -1,          ///< 400: malformed, or a smuggling shape
    GS_HTTP_URI_TOO_LONG = -3,         ///< 414: the request line passed max_request_line
    GS_HTTP_HEADERS_TOO_LARGE = -4,    ///< 431: the header section passed max_header_size
    GS_HTTP_TOO_MANY_HEADERS = -5,     ///< 431: more than max_headers fields
    GS_HTTP_VERSION_NOT_SUPPORTED = -6,///< 505: a well-formed HTTP-version other than 1.0/1.1
    GS_HTTP_NOT_IMPLEMENTED = -7,      ///< 501: a transfer coding other than chunked
    GS_HTTP_BODY_TOO_LARGE = -8,       ///< 413: a chunked body passed max_body
};

/// Flags for gs_http_limits.flags.
enum {
    GS_HTTP_STRICT_CRLF = 1,  ///< a bare LF line end is GS_HTTP_BAD_REQUEST
};

/// The largest value any limit may have (larger ones are taken as this); it keeps every
/// offset of a head in 32 bits.
#define GS_HTTP_LIMIT_MAX (1u << 30)

/// Limits for gs_http_parse_request. `max_headers` is also the capacity of the array
/// passed to it.
struct gs_http_limits {
    uint32_t max_request_line;  ///< bytes before the request line's line end, leading empty lines included
    uint32_t max_header_size;   ///< bytes of the header section: field lines and the empty line ending it
    uint32_t max_headers;       ///< fields
    uint32_t flags;             ///< GS_HTTP_STRICT_CRLF
};

/// SPEC §11's defaults: 8 KiB request line, 64 KiB of header fields, 100 fields.
#define GS_HTTP_LIMITS_DEFAULT { 8192, 65536, 100, 0 }

/// Bytes of the buffer: buf[off ..< off + len].
struct gs_http_span {
    uint32_t off;
    uint32_t len;
};

/// One header field; the value has no leading or trailing SP/HTAB.
struct gs_http_header {
    struct gs_http_span name;
    struct gs_http_span value;
};

/// The form of the request target (RFC 9112 §3.2).
enum {
    GS_HTTP_ORIGIN_FORM = 0,     ///< "/path?query"
    GS_HTTP_ABSOLUTE_FORM = 1,   ///< "scheme://authority/path?query"
    GS_HTTP_AUTHORITY_FORM = 2,  ///< anything else, as "host:port" for CONNECT
    GS_HTTP_ASTERISK_FORM = 3,   ///< "*", for OPTIONS
};

/// A parsed request head. Valid only when gs_http_parse_request returned a length.
struct gs_http_request {
    struct gs_http_span method;
    struct gs_http_span target;     ///< as sent
    /// Origin and absolute forms: the path, up to the first '?' (empty for
    /// "http://host"); the other forms: the whole target.
    struct gs_http_span path;
    struct gs_http_span query;      ///< after the first '?'; only when has_query
    struct gs_http_span authority;  ///< absolute form: the authority; else empty
    uint8_t has_query;              ///< 1 when the target has a '?' (the query may be empty)
    uint8_t form;                   ///< GS_HTTP_*_FORM
    uint8_t minor_version;          ///< 0 or 1 (HTTP/1.x)
    uint32_t num_headers;
};

/// Parses a request head at the start of buf[0 ..< len].
/// - Parameters:
///   - last_len: 0 on the first call for this head; afterwards the `len` of the previous
///     call, which returned GS_HTTP_INCOMPLETE for the same bytes (a prefix of these).
///   - headers: room for limits->max_headers fields.
/// - Returns: the length of the head (request line, fields and the empty line) with
///   *req and headers[0 ..< req->num_headers] filled in; GS_HTTP_INCOMPLETE; or
///   GS_HTTP_BAD_REQUEST, GS_HTTP_URI_TOO_LONG, GS_HTTP_HEADERS_TOO_LARGE,
///   GS_HTTP_TOO_MANY_HEADERS, GS_HTTP_VERSION_NOT_SUPPORTED. The byte limits are
///   reported as soon as they are passed, before the head is complete; with `last_len`
///   not 0, a malformed byte, a version or one field too many may be reported only once
///   the head is complete (or a byte limit is passed). A complete head gives the same
///   result however its bytes were split.
ptrdiff_t gs_http_parse_request(const char *buf, size_t len, size_t last_len,
                                const struct gs_http_limits *limits,
                                struct gs_http_request *req, struct gs_http_header *headers);

/// The status code a server answers a negative result with; 0 for GS_HTTP_INCOMPLETE
/// and lengths.
int gs_http_status(ptrdiff_t result);

// MARK: - Fields

/// 1 when two field names are equal ignoring ASCII case, else 0.
int gs_http_name_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/// Copies `len` bytes from src to dst with ASCII letters in lower case (dst may be src).
void gs_http_lowercase(char *dst, const char *src, size_t len);

/// The index of the first header at or after `from` named `name` (any case), or -1.
ptrdiff_t gs_http_find_header(const char *buf, const struct gs_http_header *headers, size_t count,
                              size_t from, const char *name, size_t name_len);

/// 1 when the comma-separated list `value` has an element equal to `token` ignoring
/// ASCII case and surrounding SP/HTAB ("close" in `Connection: keep-alive, Close`), else 0.
int gs_http_list_has(const char *value, size_t len, const char *token, size_t token_len);

// MARK: - Response fields

/// What a response field name is to the server that sends it.
enum {
    GS_HTTP_FIELD_INVALID = -1,          ///< empty, or not a token: not sent
    GS_HTTP_FIELD_OTHER = 0,
    GS_HTTP_FIELD_CONTENT_LENGTH,
    GS_HTTP_FIELD_TRANSFER_ENCODING,
    GS_HTTP_FIELD_DATE,
    GS_HTTP_FIELD_CONNECTION,
};

/// Classifies a response field name (any case): one of GS_HTTP_FIELD_*.
int gs_http_response_field(const char *name, size_t len);

/// 1 when a field value may be sent as it is (it holds no CR, LF or NUL), else 0.
int gs_http_value_safe(const char *value, size_t len);

// MARK: - Body framing (RFC 9112 §6)

/// Parses a Content-Length value: ASCII digits only (no sign, no list, no inner
/// whitespace), at most INT64_MAX. Returns 0 with *out set, or GS_HTTP_BAD_REQUEST.
int gs_http_parse_content_length(const char *value, size_t len, uint64_t *out);

/// What a Transfer-Encoding field value asks for.
/// - Returns: GS_HTTP_BODY_CHUNKED when it is exactly "chunked" (any case, OWS around);
///   GS_HTTP_NOT_IMPLEMENTED for codings we do not decode before a final chunked
///   ("gzip, chunked"); GS_HTTP_BAD_REQUEST when chunked is not the final coding or is
///   there twice (RFC 9112 §6.3: the length cannot be determined), or the list is empty or
///   not a list of tokens.
int gs_http_transfer_encoding(const char *value, size_t len);

/// How a request's body is framed.
enum {
    GS_HTTP_BODY_NONE = 0,     ///< no body
    GS_HTTP_BODY_LENGTH = 1,   ///< Content-Length bytes (which may be 0)
    GS_HTTP_BODY_CHUNKED = 2,  ///< chunked: decode with gs_http_decode_chunked
};

/// Decides how the body of a parsed request is framed, refusing the smuggling shapes.
/// All Transfer-Encoding fields are read as one list, as RFC 9110 §5.3 joins them.
/// - Returns: GS_HTTP_BODY_NONE, GS_HTTP_BODY_LENGTH (with *content_length) or
///   GS_HTTP_BODY_CHUNKED; GS_HTTP_BAD_REQUEST for a malformed Content-Length, two
///   different Content-Length values (equal repeats are one), Content-Length together
///   with Transfer-Encoding, Transfer-Encoding in an HTTP/1.0 request, or what
///   gs_http_transfer_encoding refuses; GS_HTTP_NOT_IMPLEMENTED from it.
int gs_http_body_framing(const char *buf, const struct gs_http_request *req,
                         const struct gs_http_header *headers, uint64_t *content_length);

// MARK: - Chunked bodies

/// The state of one chunked body being decoded. Set it up with gs_http_chunked_init.
struct gs_http_chunked {
    uint64_t max_body;       ///< decoded bytes allowed (GS_HTTP_BODY_TOO_LARGE past it)
    uint64_t total;          ///< decoded bytes so far
    uint64_t left;           ///< bytes of the current chunk's data still to come
    uint32_t max_line;       ///< bytes allowed in a chunk-size line, with its extensions and CRLF
    uint32_t max_trailers;   ///< bytes allowed in the trailer section
    uint32_t line;           ///< bytes of the current line so far
    uint32_t trailers;       ///< bytes of the trailer section so far
    uint8_t state;           ///< private
};

/// Starts decoding a body of at most `max_body` bytes. A chunk-size line (with its
/// extensions and CRLF) may have 4 KiB, the trailer section 64 KiB (set max_line and
/// max_trailers after this to change them).
void gs_http_chunked_init(struct gs_http_chunked *d, uint64_t max_body);

/// Decodes the next bytes of a chunked body in place.
/// - Parameters:
///   - buf: the bytes received since the last call (or the body's first bytes).
///   - size: in, the number of those bytes; out, the number of decoded data bytes, which
///     are now at buf[0 ..< *size].
/// - Returns: GS_HTTP_INCOMPLETE when the body goes on; when it ended (last chunk and
///   trailers consumed), the number of bytes received after it, moved to
///   buf[*size ..< *size + result] (the next pipelined request); GS_HTTP_BAD_REQUEST,
///   GS_HTTP_BODY_TOO_LARGE (as soon as a chunk size passes max_body), or
///   GS_HTTP_HEADERS_TOO_LARGE (trailer section). Calls after the end return all bytes as
///   following it.
ptrdiff_t gs_http_decode_chunked(struct gs_http_chunked *d, char *buf, size_t *size);

/// 1 while the decoder is inside a chunk's data (so it needs no more than `left` bytes
/// to make progress), 0 otherwise.
int gs_http_chunked_in_data(const struct gs_http_chunked *d);

// MARK: - Paths

/// Percent-decodes src[0 ..< len] into dst, which has room for `len` bytes and may be
/// src itself. '+' is left as it is (it means a space only in form data), and so is
/// "%2F": the decoded path may hold '/' that was escaped.
/// - Returns: the decoded length, or GS_HTTP_BAD_REQUEST for a '%' not followed by two
///   hex digits, or for "%00" (a NUL would cut the path short in C and Lua alike).
ptrdiff_t gs_http_percent_decode(const char *src, size_t len, char *dst);

#ifdef __cplusplus
}
#endif

#endif
