// The request parser and its helpers (http_parser.h says what each function promises).
//
// Why our own and not a packaged one: Debian ships only Node's old libhttp-parser, which
// is deprecated upstream (replaced by llhttp, which Debian does not package), is a
// callback state machine that copies or re-joins fields split across reads, and has had
// its request-smuggling leniencies fixed only in llhttp. A pico-style parser is a few
// hundred lines, keeps the receive buffer as the only copy of the head, and lets every
// strictness rule of RFC 9112 be read in one place.
//
// Speed: one pass over the bytes, no allocation. The long runs (the target, field values)
// are skipped sixteen bytes a step with SSE2, or eight with word arithmetic, finding the
// first byte that ends the run; names and the short parts go byte by byte through one
// class table. A typical 400-byte browser request parses in about 100 ns
// (tests/http/parser_fuzz.c's bench mode).
#include "http_parser.h"

#include <string.h>

// MARK: - Character classes

enum { C_TOKEN = 1, C_VCHAR = 2, C_HEX = 4 };

// C_TOKEN: RFC 9110 tchar. C_VCHAR: VCHAR and obs-text (0x21-0x7E, 0x80-0xFF), the bytes
// of a request target and of field content other than SP/HTAB. C_HEX: hex digits.
static const unsigned char cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x10 */
    0, 3, 2, 3, 3, 3, 3, 3, 2, 2, 3, 3, 2, 3, 3, 2,  /* 0x20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2,  /* 0x30 */
    2, 7, 7, 7, 7, 7, 7, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x40 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 3, 3,  /* 0x50 */
    3, 7, 7, 7, 7, 7, 7, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x60 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 3, 2, 3, 0,  /* 0x70 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0x80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0x90 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0xA0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0xB0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0xC0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0xD0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0xE0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,  /* 0xF0 */
};

static inline int is_token(unsigned char c) { return cls[c] & C_TOKEN; }
static inline int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }
static inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c; }

static inline int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// MARK: - Runs, eight bytes at a time

// SSE2 (every x86-64) takes sixteen bytes a step, word arithmetic eight elsewhere, and
// bytes one at a time finish either. GS_HTTP_PORTABLE leaves only the byte loops and
// the word arithmetic (the fuzz test builds that variant too).
#if defined(__SSE2__) && !defined(GS_HTTP_PORTABLE)
#define GS_HTTP_SSE2 1
#include <emmintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
#define GS_HTTP_SWAR 1
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
// The high bit of each byte below n (n <= 0x80); exact at the lowest set byte, which is
// all that is read (a borrow can only flag bytes above a byte that really is below n).
#define BELOW(w, n) (((w) - ONES * (n)) & ~(w) & HIGHS)
#define EQUAL(w, c) BELOW((w) ^ (ONES * (c)), 1)

static inline uint64_t load8(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}
#endif

/// The first byte at or after p that is not a token character; end if there is none.
static inline __attribute__((always_inline)) const unsigned char *skip_token(const unsigned char *p, const unsigned char *end) {
    while (end - p >= 4) {
        if (!is_token(p[0])) return p;
        if (!is_token(p[1])) return p + 1;
        if (!is_token(p[2])) return p + 2;
        if (!is_token(p[3])) return p + 3;
        p += 4;
    }
    while (p < end && is_token(*p)) ++p;
    return p;
}

/// The first byte at or after p that is not in a request target (a control, SP, DEL), or
/// with `stop_at_query` a '?'; end if there is none.
static inline __attribute__((always_inline)) const unsigned char *skip_target(const unsigned char *p, const unsigned char *end, int stop_at_query) {
#ifdef GS_HTTP_SSE2
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7F), question = _mm_set1_epi8('?');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, sp), v), _mm_cmpeq_epi8(v, del));   // <= 0x20 unsigned, DEL
        if (stop_at_query) hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, question));
        int mask = _mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
#ifdef GS_HTTP_SWAR
    while (end - p >= 8) {
        uint64_t w = load8(p);
        uint64_t hit = BELOW(w, 0x21) | EQUAL(w, 0x7F);
        if (stop_at_query) hit |= EQUAL(w, '?');
        if (hit) return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
#endif
    while (p < end && (cls[*p] & C_VCHAR) && !(stop_at_query && *p == '?')) ++p;
    return p;
}

/// The first byte at or after p that is a control (HTAB, CR and LF included) or DEL; end
/// if there is none.
static inline __attribute__((always_inline)) const unsigned char *skip_field_content(const unsigned char *p, const unsigned char *end) {
#ifdef GS_HTTP_SSE2
    const __m128i ctl = _mm_set1_epi8(0x1F), del = _mm_set1_epi8(0x7F);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v), _mm_cmpeq_epi8(v, del));  // <= 0x1F unsigned, DEL
        int mask = _mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
#ifdef GS_HTTP_SWAR
    while (end - p >= 8) {
        uint64_t w = load8(p);
        uint64_t hit = BELOW(w, 0x20) | EQUAL(w, 0x7F);
        if (hit) return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
#endif
    while (p < end && ((cls[*p] & C_VCHAR) || *p == ' ')) ++p;
    return p;
}

// MARK: - The request head

static inline struct gs_http_span span(const unsigned char *base, const unsigned char *from, const unsigned char *to) {
    struct gs_http_span s = { (uint32_t)(from - base), (uint32_t)(to - from) };
    return s;
}

static inline uint32_t clamp_limit(uint32_t n) { return n > GS_HTTP_LIMIT_MAX ? GS_HTTP_LIMIT_MAX : n; }

/// After more bytes arrived: 1 when a full parse is needed (an end of head may be in the
/// new bytes, or a byte limit may have been passed), 0 when the head is still incomplete.
/// Only the new bytes are searched for the end; finding the request line's end is one
/// memchr over at most max_request_line bytes.
static int needs_full_parse(const unsigned char *buf, size_t len, size_t last_len, size_t max_rl, size_t max_hs) {
    const unsigned char *end = buf + len;
    const unsigned char *p = buf + (last_len > 3 ? last_len - 3 : 0);
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        ++p;
        if (p < end && *p == '\n') return 1;
        if (p + 1 < end && p[0] == '\r' && p[1] == '\n') return 1;
    }
    if (len <= max_rl + 1 && len <= max_hs) return 0;
    // Where the request line ends decides which limit applies.
    p = buf;
    while (p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))) p += (*p == '\r') ? 2 : 1;
    size_t room = max_rl + 2 > len ? len : max_rl + 2;
    if (p >= buf + room) return len > max_rl + 1;
    const unsigned char *lf = memchr(p, '\n', (size_t)(buf + room - p));
    if (lf == NULL) return len > max_rl + 2;
    if ((size_t)(lf - buf) > max_rl) return 1;
    return len - (size_t)(lf + 1 - buf) > max_hs;
}

/// Sets the target's form, path, query and authority from the target and its first '?'.
static void split_target(const unsigned char *base, const unsigned char *t, const unsigned char *t_end,
                         const unsigned char *q, struct gs_http_request *req) {
    const unsigned char *path_end = q ? q : t_end;
    req->authority = span(base, t, t);
    req->has_query = 0;
    req->query = span(base, t_end, t_end);
    if (*t == '/') {
        req->form = GS_HTTP_ORIGIN_FORM;
        req->path = span(base, t, path_end);
    } else if (t_end - t == 1 && *t == '*') {
        req->form = GS_HTTP_ASTERISK_FORM;
        req->path = span(base, t, t_end);
        return;
    } else {
        // absolute-form: scheme "://" authority [path]; scheme = ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")
        const unsigned char *s = t;
        if (lower(*s) >= 'a' && lower(*s) <= 'z') {
            ++s;
            while (s < path_end && ((lower(*s) >= 'a' && lower(*s) <= 'z') || (*s >= '0' && *s <= '9') ||
                                    *s == '+' || *s == '-' || *s == '.'))
                ++s;
        }
        if (s > t && path_end - s >= 3 && s[0] == ':' && s[1] == '/' && s[2] == '/') {
            const unsigned char *a = s + 3, *a_end = a;
            while (a_end < path_end && *a_end != '/') ++a_end;
            req->form = GS_HTTP_ABSOLUTE_FORM;
            req->authority = span(base, a, a_end);
            req->path = span(base, a_end, path_end);
        } else {
            req->form = GS_HTTP_AUTHORITY_FORM;
            req->path = span(base, t, t_end);
            return;
        }
    }
    if (q) {
        req->has_query = 1;
        req->query = span(base, q + 1, t_end);
    }
}

// Every read goes through this: at `end` the head is either incomplete (end is the end
// of the buffer) or over the limit of the part being read (end is where the limit is).
#define NEED_BYTE()              \
    do {                         \
        if (p == end) goto ran_out; \
    } while (0)

// A line end: CRLF, or LF unless strict; anything else is malformed.
#define LINE_END()                                  \
    do {                                            \
        if (*p == '\r') {                           \
            ++p;                                    \
            NEED_BYTE();                            \
            if (*p != '\n') return GS_HTTP_BAD_REQUEST; \
            ++p;                                    \
        } else if (*p == '\n' && !strict) {         \
            ++p;                                    \
        } else {                                    \
            return GS_HTTP_BAD_REQUEST;             \
        }                                           \
    } while (0)

ptrdiff_t gs_http_parse_request(const char *buffer, size_t len, size_t last_len,
                                const struct gs_http_limits *limits,
                                struct gs_http_request *req, struct gs_http_header *headers) {
    const unsigned char *const buf = (const unsigned char *)buffer;
    const size_t max_rl = clamp_limit(limits->max_request_line);
    const size_t max_hs = clamp_limit(limits->max_header_size);
    const uint32_t max_headers = limits->max_headers;
    const int strict = (limits->flags & GS_HTTP_STRICT_CRLF) != 0;
    // Every offset fits in 32 bits: a head is at most max_rl + 2 + max_hs bytes.
    if (len > UINT32_MAX) len = UINT32_MAX;
    const unsigned char *const buf_end = buf + len;

    if (last_len != 0 && last_len <= len && !needs_full_parse(buf, len, last_len, max_rl, max_hs))
        return GS_HTTP_INCOMPLETE;

    const unsigned char *p = buf;
    const unsigned char *end = (len > max_rl + 2) ? buf + max_rl + 2 : buf_end;
    ptrdiff_t over_limit = GS_HTTP_URI_TOO_LONG;

    // Empty lines before the request line (RFC 9112 §2.2).
    for (;;) {
        NEED_BYTE();
        if (*p != '\r' && *p != '\n') break;
        LINE_END();
    }

    // method SP
    const unsigned char *m = p;
    p = skip_token(p, end);
    NEED_BYTE();
    if (p == m || *p != ' ') return GS_HTTP_BAD_REQUEST;
    req->method = span(buf, m, p);
    ++p;

    // request-target SP
    const unsigned char *t = p, *q = NULL;
    for (;;) {
        p = skip_target(p, end, q == NULL);
        NEED_BYTE();
        if (*p != '?') break;
        q = p++;
    }
    if (p == t || *p != ' ') return GS_HTTP_BAD_REQUEST;
    const unsigned char *t_end = p;
    ++p;

    // HTTP-version = "HTTP/" DIGIT "." DIGIT, then the line end
    static const char name[5] = { 'H', 'T', 'T', 'P', '/' };
    for (int i = 0; i < 5; i++) {
        NEED_BYTE();
        if (*p != (unsigned char)name[i]) return GS_HTTP_BAD_REQUEST;
        ++p;
    }
    NEED_BYTE();
    if (*p < '0' || *p > '9') return GS_HTTP_BAD_REQUEST;
    unsigned char major = *p++;
    NEED_BYTE();
    if (*p != '.') return GS_HTTP_BAD_REQUEST;
    ++p;
    NEED_BYTE();
    if (*p < '0' || *p > '9') return GS_HTTP_BAD_REQUEST;
    unsigned char minor = *p++;
    NEED_BYTE();
    const unsigned char *line_end = p;
    LINE_END();
    if ((size_t)(line_end - buf) > max_rl) return GS_HTTP_URI_TOO_LONG;
    if (major != '1' || minor > '1') return GS_HTTP_VERSION_NOT_SUPPORTED;
    req->minor_version = (uint8_t)(minor - '0');
    req->target = span(buf, t, t_end);
    split_target(buf, t, t_end, q, req);

    // *( field-name ":" OWS field-value OWS line-end ) line-end
    end = ((size_t)(buf_end - p) > max_hs) ? p + max_hs : buf_end;
    over_limit = GS_HTTP_HEADERS_TOO_LARGE;
    uint32_t n = 0;
    for (;;) {
        NEED_BYTE();
        if (*p == '\r' || *p == '\n') {
            LINE_END();
            break;
        }
        if (n == max_headers) return GS_HTTP_TOO_MANY_HEADERS;
        // A line starting with whitespace (obs-fold, or before the first field) is no token.
        const unsigned char *f = p;
        p = skip_token(p, end);
        NEED_BYTE();
        if (p == f || *p != ':') return GS_HTTP_BAD_REQUEST;
        headers[n].name = span(buf, f, p);
        ++p;
        for (;;) {
            NEED_BYTE();
            if (!is_ows(*p)) break;
            ++p;
        }
        const unsigned char *v = p;
        for (;;) {
            p = skip_field_content(p, end);
            NEED_BYTE();
            if (*p != '\t') break;
            ++p;
        }
        const unsigned char *v_end = p;
        LINE_END();
        while (v_end > v && is_ows(v_end[-1])) --v_end;
        headers[n].value = span(buf, v, v_end);
        n++;
    }
    req->num_headers = n;
    return p - buf;

ran_out:
    return end == buf_end ? GS_HTTP_INCOMPLETE : over_limit;
}

#undef NEED_BYTE
#undef LINE_END

int gs_http_status(ptrdiff_t result) {
    switch (result) {
    case GS_HTTP_BAD_REQUEST: return 400;
    case GS_HTTP_URI_TOO_LONG: return 414;
    case GS_HTTP_HEADERS_TOO_LARGE:
    case GS_HTTP_TOO_MANY_HEADERS: return 431;
    case GS_HTTP_VERSION_NOT_SUPPORTED: return 505;
    case GS_HTTP_NOT_IMPLEMENTED: return 501;
    case GS_HTTP_BODY_TOO_LARGE: return 413;
    default: return 0;
    }
}

// MARK: - Fields

int gs_http_name_equal(const char *a, size_t a_len, const char *b, size_t b_len) {
    if (a_len != b_len) return 0;
    for (size_t i = 0; i < a_len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

void gs_http_lowercase(char *dst, const char *src, size_t len) {
    for (size_t i = 0; i < len; i++) dst[i] = (char)lower((unsigned char)src[i]);
}

ptrdiff_t gs_http_find_header(const char *buf, const struct gs_http_header *headers, size_t count,
                              size_t from, const char *name, size_t name_len) {
    for (size_t i = from; i < count; i++)
        if (gs_http_name_equal(buf + headers[i].name.off, headers[i].name.len, name, name_len)) return (ptrdiff_t)i;
    return -1;
}

int gs_http_response_field(const char *name, size_t len) {
    const unsigned char *p = (const unsigned char *)name;
    if (len == 0 || skip_token(p, p + len) != p + len) return GS_HTTP_FIELD_INVALID;
    switch (len) {
    case 4: return gs_http_name_equal(name, len, "date", 4) ? GS_HTTP_FIELD_DATE : GS_HTTP_FIELD_OTHER;
    case 10: return gs_http_name_equal(name, len, "connection", 10) ? GS_HTTP_FIELD_CONNECTION : GS_HTTP_FIELD_OTHER;
    case 14:
        return gs_http_name_equal(name, len, "content-length", 14) ? GS_HTTP_FIELD_CONTENT_LENGTH : GS_HTTP_FIELD_OTHER;
    case 17:
        return gs_http_name_equal(name, len, "transfer-encoding", 17) ? GS_HTTP_FIELD_TRANSFER_ENCODING
                                                                      : GS_HTTP_FIELD_OTHER;
    default: return GS_HTTP_FIELD_OTHER;
    }
}

int gs_http_value_safe(const char *value, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == '\r' || c == '\n' || c == 0) return 0;
    }
    return 1;
}

int gs_http_list_has(const char *value, size_t len, const char *token, size_t token_len) {
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows((unsigned char)value[i]) || value[i] == ',')) i++;
        size_t s = i;
        while (i < len && value[i] != ',') i++;
        size_t e = i;
        while (e > s && is_ows((unsigned char)value[e - 1])) e--;
        if (e > s && gs_http_name_equal(value + s, e - s, token, token_len)) return 1;
    }
    return 0;
}

// MARK: - Body framing

int gs_http_parse_content_length(const char *value, size_t len, uint64_t *out) {
    if (len == 0) return GS_HTTP_BAD_REQUEST;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < '0' || c > '9') return GS_HTTP_BAD_REQUEST;
        if (n > (uint64_t)(INT64_MAX - (c - '0')) / 10) return GS_HTTP_BAD_REQUEST;
        n = n * 10 + (c - '0');
    }
    *out = n;
    return 0;
}

/// What the transfer codings seen so far add up to (several fields make one list).
struct codings {
    unsigned count;    ///< codings listed
    unsigned chunked;  ///< of them "chunked"
    int last_chunked;  ///< the last one is "chunked"
    int malformed;     ///< not a list of tokens (with optional parameters)
};

static void read_codings(const unsigned char *v, size_t len, struct codings *c) {
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ',')) i++;   // empty elements are allowed (RFC 9110 §5.6.1)
        if (i == len) break;
        size_t s = i;
        while (i < len && is_token(v[i])) i++;
        if (i == s) {
            c->malformed = 1;
            return;
        }
        int is_chunked = gs_http_name_equal((const char *)v + s, i - s, "chunked", 7);
        while (i < len && is_ows(v[i])) i++;
        if (i < len && v[i] == ';') {
            // transfer-parameters: chunked has none, so this is a coding we do not know.
            // Skipping to the next comma may split a quoted parameter, but every outcome
            // of a parameter is a refusal, never chunked.
            is_chunked = 0;
            while (i < len && v[i] != ',') i++;
        } else if (i < len && v[i] != ',') {
            c->malformed = 1;
            return;
        }
        c->count++;
        c->chunked += (unsigned)is_chunked;
        c->last_chunked = is_chunked;
    }
}

static int decide_codings(const struct codings *c) {
    if (c->malformed || c->count == 0 || !c->last_chunked || c->chunked > 1) return GS_HTTP_BAD_REQUEST;
    if (c->count > 1) return GS_HTTP_NOT_IMPLEMENTED;
    return GS_HTTP_BODY_CHUNKED;
}

int gs_http_transfer_encoding(const char *value, size_t len) {
    struct codings c = { 0, 0, 0, 0 };
    read_codings((const unsigned char *)value, len, &c);
    return decide_codings(&c);
}

int gs_http_body_framing(const char *buf, const struct gs_http_request *req,
                         const struct gs_http_header *headers, uint64_t *content_length) {
    struct codings te = { 0, 0, 0, 0 };
    int has_te = 0, has_length = 0;
    uint64_t length = 0;
    for (uint32_t i = 0; i < req->num_headers; i++) {
        const struct gs_http_header *h = &headers[i];
        const char *name = buf + h->name.off, *value = buf + h->value.off;
        if (h->name.len == 14 && gs_http_name_equal(name, 14, "content-length", 14)) {
            uint64_t n;
            if (gs_http_parse_content_length(value, h->value.len, &n) != 0) return GS_HTTP_BAD_REQUEST;
            if (has_length && n != length) return GS_HTTP_BAD_REQUEST;
            has_length = 1;
            length = n;
        } else if (h->name.len == 17 && gs_http_name_equal(name, 17, "transfer-encoding", 17)) {
            has_te = 1;
            read_codings((const unsigned char *)value, h->value.len, &te);
        }
    }
    if (has_te) {
        // Both framings (RFC 9112 §6.1: a server MAY reject) is the classic smuggling
        // shape; HTTP/1.0 has no chunked (§6.1: faulty framing).
        if (has_length || req->minor_version == 0) return GS_HTTP_BAD_REQUEST;
        return decide_codings(&te);
    }
    if (has_length) {
        *content_length = length;
        return GS_HTTP_BODY_LENGTH;
    }
    return GS_HTTP_BODY_NONE;
}

// MARK: - Chunked bodies

// Every line of a chunked body ends in CRLF, whatever GS_HTTP_STRICT_CRLF says of heads:
// RFC 9112 §2.2 lets a recipient take a bare LF for the start line and fields only, and a
// chunk line end read differently by two parsers is a known way to smuggle a request.

enum {
    CH_SIZE_START,     // the first hex digit of a chunk size
    CH_SIZE,           // more hex digits
    CH_SIZE_WS,        // BWS after the size
    CH_EXT,            // chunk extensions, skipped
    CH_SIZE_LF,        // the LF of the size line
    CH_DATA,           // chunk data
    CH_DATA_CR,        // the line end after the data
    CH_DATA_LF,
    CH_TRAILER_START,  // a trailer field or the final empty line
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,         // the LF of the final empty line
    CH_DONE,
};

void gs_http_chunked_init(struct gs_http_chunked *d, uint64_t max_body) {
    memset(d, 0, sizeof *d);
    d->max_body = max_body;
    d->max_line = 4096;
    d->max_trailers = 65536;
    d->state = CH_SIZE_START;
}

int gs_http_chunked_in_data(const struct gs_http_chunked *d) { return d->state == CH_DATA; }

ptrdiff_t gs_http_decode_chunked(struct gs_http_chunked *d, char *buf, size_t *size) {
    const size_t n = *size;
    size_t src = 0, dst = 0;
    ptrdiff_t result = GS_HTTP_INCOMPLETE;
    while (src < n) {
        if (d->state == CH_DATA) {
            size_t take = n - src;
            if (d->left < take) take = (size_t)d->left;
            if (dst != src) memmove(buf + dst, buf + src, take);
            dst += take;
            src += take;
            d->left -= take;
            d->total += take;
            if (d->left == 0) d->state = CH_DATA_CR;
            continue;
        }
        if (d->state == CH_DONE) break;
        unsigned char c = (unsigned char)buf[src++];
        if (d->state <= CH_SIZE_LF) {
            if (++d->line > d->max_line) goto bad;
        } else if (d->state >= CH_TRAILER_START) {
            if (++d->trailers > d->max_trailers) {
                result = GS_HTTP_HEADERS_TOO_LARGE;
                goto fail;
            }
        }
        switch (d->state) {
        case CH_SIZE_START:
            if (!(cls[c] & C_HEX)) goto bad;
            d->left = (uint64_t)hex_value(c);
            d->state = CH_SIZE;
            break;
        case CH_SIZE:
            if (cls[c] & C_HEX) {
                if (d->left >> 60) goto bad;   // would overflow 64 bits
                d->left = (d->left << 4) | (uint64_t)hex_value(c);
                break;
            }
            /* fall through */
        case CH_SIZE_WS:
            if (is_ows(c)) d->state = CH_SIZE_WS;
            else if (c == ';') d->state = CH_EXT;
            else if (c == '\r') d->state = CH_SIZE_LF;
            else goto bad;
            break;
        case CH_EXT:
            if (c == '\r') d->state = CH_SIZE_LF;
            else if ((c < 0x20 && c != '\t') || c == 0x7F) goto bad;
            break;
        case CH_SIZE_LF:
            if (c != '\n') goto bad;
            d->line = 0;
            if (d->left == 0) {
                d->state = CH_TRAILER_START;
            } else if (d->left > d->max_body - d->total) {
                result = GS_HTTP_BODY_TOO_LARGE;
                goto fail;
            } else {
                d->state = CH_DATA;
            }
            break;
        case CH_DATA_CR:
            if (c == '\r') d->state = CH_DATA_LF;
            else goto bad;
            break;
        case CH_DATA_LF:
            if (c != '\n') goto bad;
            d->state = CH_SIZE_START;
            break;
        case CH_TRAILER_START:
            if (c == '\r') d->state = CH_END_LF;
            else if (is_token(c)) d->state = CH_TRAILER_NAME;
            else goto bad;
            break;
        case CH_TRAILER_NAME:
            if (c == ':') d->state = CH_TRAILER_VALUE;
            else if (!is_token(c)) goto bad;
            break;
        case CH_TRAILER_VALUE:
            if (c == '\r') d->state = CH_TRAILER_LF;
            else if (!((cls[c] & C_VCHAR) || is_ows(c))) goto bad;
            break;
        case CH_TRAILER_LF:
            if (c != '\n') goto bad;
            d->state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (c != '\n') goto bad;
            d->state = CH_DONE;
            break;
        }
    }
    if (d->state == CH_DONE) {
        result = (ptrdiff_t)(n - src);
        if (dst != src) memmove(buf + dst, buf + src, n - src);
    }
    *size = dst;
    return result;

bad:
    result = GS_HTTP_BAD_REQUEST;
fail:
    *size = dst;
    return result;
}

// MARK: - Paths

ptrdiff_t gs_http_percent_decode(const char *src, size_t len, char *dst) {
    const char *pct = memchr(src, '%', len);
    size_t i = pct ? (size_t)(pct - src) : len;
    if (dst != src) memmove(dst, src, i);
    size_t o = i;
    while (i < len) {
        unsigned char c = (unsigned char)src[i];
        if (c != '%') {
            dst[o++] = (char)c;
            i++;
            continue;
        }
        if (len - i < 3) return GS_HTTP_BAD_REQUEST;
        int hi = hex_value((unsigned char)src[i + 1]), lo = hex_value((unsigned char)src[i + 2]);
        if (hi < 0 || lo < 0 || (hi | lo) == 0) return GS_HTTP_BAD_REQUEST;
        dst[o++] = (char)(hi << 4 | lo);
        i += 3;
    }
    return (ptrdiff_t)o;
}
