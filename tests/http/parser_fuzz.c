// Fuzz harness for Sources/CHTTP/http_parser.c, built by tests/http/parser_fuzz_test.lua
// with ASan and UBSan (and run under valgrind by the same test), and by hand for the
// benchmark:
//
//   cc -O2 -I Sources/CHTTP/include tests/http/parser_fuzz.c Sources/CHTTP/http_parser.c -o /tmp/pf
//   /tmp/pf                 fuzz for GSOCKD_FUZZ_SECONDS (default 3), or GSOCKD_FUZZ_ROUNDS
//                           rounds, from GSOCKD_FUZZ_SEED (default: the time; printed, so
//                           a failure replays); a round that hangs fails by alarm
//   /tmp/pf bench [N]       ns per parse of a typical 400-byte browser request (and of
//                           a longer one, the framing, a re-parse, a chunked body)
//   /tmp/pf gen N           N valid requests with our parse of each, one JSON object a
//                           line, for support/h11_agree.py to compare with h11
//
// Each fuzz round builds a request and checks, on a buffer that ends exactly where the
// bytes end (so a read past them is a sanitizer or valgrind error):
//   - generated valid requests: the parse gives exactly what the generator wrote (head
//     length, method, target, path, query, version, every header, body framing, the
//     decoded chunked body and what follows it), whole, split in two at every byte, and
//     fed one byte at a time with last_len;
//   - mutated requests (seed corpus and generated ones, with bytes flipped, inserted,
//     deleted, repeated, line ends changed, hostile header lines added) and random bytes,
//     under random limits: the parse accepts exactly when a separate line-by-line
//     reference parser in this file does, with the same fields and the same body framing
//     as a reference reading of RFC 9112 §6; any split gives either "incomplete" or the
//     whole's result; limits are set at the input's own sizes, one off, as often as not;
//   - chunked bodies (generated, mutated, and built of valid and hostile pieces) decode
//     the same whole, split in two at every byte and byte by byte, and as a separate
//     reference decoder says;
//   - percent-decoding, Content-Length and Transfer-Encoding against small references.
// The process exits 1 with the seed, the round and the input on the first disagreement.
// support/parser_mutants.py plants bugs in the parser to show that this harness finds them.
#define _POSIX_C_SOURCE 200809L   // clock_gettime, alarm
#include "http_parser.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

// MARK: - Randomness and failure

static uint64_t rng;
static uint64_t seed;
static unsigned long round_no;
static const char *phase = "";

static uint64_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }
static int chance(unsigned percent) { return below(100) < percent; }

static void dump(const char *what, const unsigned char *p, size_t n) {
    fprintf(stderr, "%s (%zu bytes): \"", what, n);
    for (size_t i = 0; i < n && i < 4096; i++) {
        unsigned c = p[i];
        if (c == '\\' || c == '"') fprintf(stderr, "\\%c", c);
        else if (c >= 0x20 && c < 0x7F) fputc((int)c, stderr);
        else if (c == '\r') fputs("\\r", stderr);
        else if (c == '\n') fputs("\\n", stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fputs("\"\n", stderr);
}

static const unsigned char *current;
static size_t current_len;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "parser_fuzz: FAILED (%s) at %s:%d: %s\n  ", phase, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n  seed %" PRIu64 ", round %lu (GSOCKD_FUZZ_SEED=%" PRIu64 " replays)\n", seed, round_no, seed); \
            if (current) dump("  input", current, current_len);                                   \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

// MARK: - Exact-size buffers

/// A copy of p[0 ..< n] in a block of exactly n bytes (one byte for n == 0, unread).
static unsigned char *exact(const unsigned char *p, size_t n) {
    unsigned char *b = malloc(n ? n : 1);
    if (!b) abort();
    if (n) memcpy(b, p, n);
    return b;
}

// MARK: - Building requests

#define MAX_REQ 65536
#define MAX_HEADERS 128

struct built {
    unsigned char b[MAX_REQ];
    size_t len;
    int overflow;
    // what the generator wrote
    size_t head_len;
    struct gs_http_span method, target, path, query, authority;
    int has_query, form, minor;
    unsigned num_headers;
    struct gs_http_header headers[MAX_HEADERS];
    int framing;                 // GS_HTTP_BODY_*
    uint64_t content_length;
    unsigned char body[MAX_REQ]; // the decoded body
    size_t body_len;
    size_t wire_body_len;        // bytes of the body on the wire
    size_t after_len;            // bytes after the body (a next request)
};

static void put(struct built *r, const void *p, size_t n) {
    if (r->len + n > MAX_REQ) {
        r->overflow = 1;
        return;
    }
    memcpy(r->b + r->len, p, n);
    r->len += n;
}
static void puts_(struct built *r, const char *s) { put(r, s, strlen(s)); }
static void putc_(struct built *r, unsigned char c) { put(r, &c, 1); }

static struct gs_http_span mark(size_t from, size_t to) {
    struct gs_http_span s = { (uint32_t)from, (uint32_t)(to - from) };
    return s;
}

static const char tchars[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
static const char pchars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
static const char hexdigits[] = "0123456789abcdefABCDEF";

struct gen_opts {
    int h11;        // only what h11 also accepts: no leading empty lines, ASCII targets, CRLF in chunked bodies
    int max_headers;
};

static void line_end(struct built *r, const struct gen_opts *o) {
    (void)o;
    if (chance(85)) puts_(r, "\r\n");
    else putc_(r, '\n');
}

static void random_token(struct built *r, size_t max) {
    size_t n = 1 + below(max);
    for (size_t i = 0; i < n; i++) putc_(r, (unsigned char)tchars[below(sizeof tchars - 1)]);
}

static void path_bytes(struct built *r, size_t max, int ascii) {
    size_t n = below(max);
    for (size_t i = 0; i < n; i++) {
        unsigned k = (unsigned)below(20);
        if (k == 0) {
            putc_(r, '%');
            unsigned v = 1 + (unsigned)below(255);
            putc_(r, (unsigned char)"0123456789ABCDEF"[v >> 4]);
            putc_(r, (unsigned char)"0123456789abcdef"[v & 15]);
        } else if (k == 1) {
            putc_(r, '/');
        } else if (k == 2 && !ascii) {
            putc_(r, (unsigned char)(0x80 + below(128)));
        } else {
            putc_(r, (unsigned char)pchars[below(sizeof pchars - 1)]);
        }
    }
}

static const char *methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT" };
static const char *names[] = { "Host", "User-Agent", "Accept", "Accept-Language", "Accept-Encoding", "Cookie",
                               "Connection", "Referer", "X-Forwarded-For", "If-None-Match", "Cache-Control",
                               "Upgrade-Insecure-Requests", "x", "X-Empty", "Sec-Fetch-Mode", "Authorization" };

/// A field value: VCHAR / obs-text with inner SP/HTAB runs; *trim_from .. *trim_to is the
/// part without the OWS the caller adds around it.
static void field_value(struct built *r, int ascii) {
    size_t n = below(chance(10) ? 300 : 40);
    int need_vchar = 1;   // inner whitespace only between visible bytes
    for (size_t i = 0; i < n; i++) {
        unsigned k = (unsigned)below(12);
        if (k == 0 && !need_vchar && i + 1 < n) {
            putc_(r, chance(70) ? ' ' : '\t');
            need_vchar = 1;
            continue;
        }
        if (k == 1 && !ascii) putc_(r, (unsigned char)(0x80 + below(128)));
        else putc_(r, (unsigned char)(0x21 + below(0x7E - 0x21 + 1)));
        need_vchar = 0;
    }
    if (need_vchar && n) putc_(r, 'v');
}

static void ows(struct built *r) {
    if (chance(70)) return;
    size_t n = 1 + below(3);
    for (size_t i = 0; i < n; i++) putc_(r, chance(70) ? ' ' : '\t');
}

static void chunked_body(struct built *r, const struct gen_opts *o, int wide) {
    size_t start = r->len;
    unsigned chunks = (unsigned)below(wide ? 6 : 4);
    for (unsigned c = 0; c < chunks; c++) {
        size_t size = 1 + below(chance(3) ? 3000 : chance(50) ? 40 : 4);
        char hex[32];
        int lead = chance(10) ? (int)below(4) : 0;
        snprintf(hex, sizeof hex, chance(50) ? "%0*zx" : "%0*zX", lead + 1, size);
        puts_(r, hex);
        if (chance(20)) {
            if (!o->h11 && chance(30)) ows(r);
            puts_(r, ";");
            random_token(r, 8);
            if (chance(50)) {
                puts_(r, "=");
                if (chance(50)) random_token(r, 8);
                else puts_(r, "\"quoted; value, here\"");
            }
        }
        puts_(r, "\r\n");
        for (size_t i = 0; i < size; i++) {
            unsigned char ch = (unsigned char)rnd();
            putc_(r, ch);
            if (r->body_len < MAX_REQ) r->body[r->body_len++] = ch;
        }
        puts_(r, "\r\n");
    }
    puts_(r, chance(80) ? "0" : "000");
    puts_(r, "\r\n");
    if (chance(20)) {
        unsigned t = 1 + (unsigned)below(3);
        for (unsigned i = 0; i < t; i++) {
            random_token(r, 10);
            puts_(r, ":");
            ows(r);
            field_value(r, 1);
            puts_(r, "\r\n");
        }
    }
    puts_(r, "\r\n");
    r->wire_body_len = r->len - start;
}

/// A valid request with what the parser must find in it.
static void generate(struct built *r, const struct gen_opts *o) {
    memset(r, 0, offsetof(struct built, body));
    r->body_len = 0;
    if (!o->h11 && chance(10)) {
        unsigned n = 1 + (unsigned)below(2);
        for (unsigned i = 0; i < n; i++) line_end(r, o);
    }
    size_t m0 = r->len;
    if (chance(85)) puts_(r, methods[below(sizeof methods / sizeof *methods)]);
    else random_token(r, 12);
    r->method = mark(m0, r->len);
    puts_(r, " ");
    size_t t0 = r->len, q = 0;
    unsigned form = (unsigned)below(20);
    r->has_query = 0;
    if (form < 15) {
        r->form = GS_HTTP_ORIGIN_FORM;
        puts_(r, "/");
        path_bytes(r, 60, o->h11);
        r->path = mark(t0, r->len);
        r->authority = mark(t0, t0);
    } else if (form < 18) {
        r->form = GS_HTTP_ABSOLUTE_FORM;
        puts_(r, chance(50) ? "http://" : "https://");
        size_t a0 = r->len;
        puts_(r, "example.com");
        if (chance(50)) puts_(r, ":8080");
        r->authority = mark(a0, r->len);
        size_t p0 = r->len;
        if (chance(80)) {
            puts_(r, "/");
            path_bytes(r, 30, o->h11);
        }
        r->path = mark(p0, r->len);
    } else if (form < 19) {
        r->form = GS_HTTP_AUTHORITY_FORM;
        puts_(r, "example.com:443");
        r->path = mark(t0, r->len);
        r->authority = mark(t0, t0);
    } else {
        r->form = GS_HTTP_ASTERISK_FORM;
        puts_(r, "*");
        r->path = mark(t0, r->len);
        r->authority = mark(t0, t0);
    }
    if (r->form <= GS_HTTP_ABSOLUTE_FORM && chance(40)) {
        q = r->len;
        puts_(r, "?");
        path_bytes(r, 40, o->h11);
        if (chance(20)) puts_(r, "?a=b");
        r->has_query = 1;
        r->query = mark(q + 1, r->len);
    } else {
        r->query = mark(r->len, r->len);
    }
    r->target = mark(t0, r->len);
    r->minor = chance(80) ? 1 : 0;
    puts_(r, r->minor ? " HTTP/1.1" : " HTTP/1.0");
    line_end(r, o);

    // The fields: Host (for h11, in 1.1), the framing field, then others, in random order.
    int body_kind = (int)below(10);   // 0-5 none, 6-7 Content-Length, 8-9 chunked
    int chunked = body_kind >= 8 && r->minor == 1;
    int length = body_kind >= 6 && !chunked;
    enum { K_OTHER, K_HOST, K_FRAME };
    unsigned char kinds[MAX_HEADERS];
    unsigned total = 0, cap = (unsigned)o->max_headers;
    if (o->h11 && r->minor == 1 && total < cap) kinds[total++] = K_HOST;
    if ((chunked || length) && total < cap) kinds[total++] = K_FRAME;
    else chunked = length = 0;
    unsigned others = (unsigned)below(chance(5) ? cap + 1 : 12);
    while (others-- > 0 && total < cap) kinds[total++] = K_OTHER;
    for (unsigned i = total; i > 1; i--) {
        unsigned j = (unsigned)below(i);
        unsigned char t = kinds[i - 1];
        kinds[i - 1] = kinds[j];
        kinds[j] = t;
    }
    char cl[32] = "";
    size_t body_bytes = 0;
    if (length) {
        body_bytes = below(chance(10) ? 5000 : 100);
        snprintf(cl, sizeof cl, "%zu", body_bytes);
    }
    for (unsigned i = 0; i < total; i++) {
        struct gs_http_header *h = &r->headers[r->num_headers++];
        size_t n0 = r->len;
        if (kinds[i] == K_FRAME) puts_(r, chunked ? (chance(50) ? "Transfer-Encoding" : "transfer-ENCODING") : (chance(50) ? "Content-Length" : "content-length"));
        else if (kinds[i] == K_HOST) puts_(r, "Host");
        else if (chance(70)) puts_(r, o->h11 ? names[1 + below(sizeof names / sizeof *names - 1)] : names[below(sizeof names / sizeof *names)]);
        else random_token(r, 20);
        h->name = mark(n0, r->len);
        puts_(r, ":");
        ows(r);
        size_t v0 = r->len;
        if (kinds[i] == K_FRAME) puts_(r, chunked ? (chance(50) ? "chunked" : "Chunked") : cl);
        else if (kinds[i] == K_HOST) puts_(r, "localhost:8080");
        else field_value(r, o->h11 ? 1 : !chance(20));
        h->value = mark(v0, r->len);
        ows(r);
        line_end(r, o);
    }
    line_end(r, o);
    r->head_len = r->len;
    r->framing = chunked ? GS_HTTP_BODY_CHUNKED : length ? GS_HTTP_BODY_LENGTH : GS_HTTP_BODY_NONE;
    if (length) {
        r->content_length = body_bytes;
        for (size_t i = 0; i < body_bytes; i++) {
            unsigned char ch = (unsigned char)rnd();
            putc_(r, ch);
            if (r->body_len < MAX_REQ) r->body[r->body_len++] = ch;
        }
        r->wire_body_len = body_bytes;
    } else if (chunked) {
        chunked_body(r, o, 1);
    }
    size_t before = r->len;
    if (chance(20)) puts_(r, "GET /next HTTP/1.1\r\n\r\n");
    r->after_len = r->len - before;
}

// MARK: - References, written apart from the parser

static int ref_token(unsigned char c) { return c && strchr(tchars, c) != NULL; }
static int ref_vchar(unsigned char c) { return (c >= 0x21 && c <= 0x7E) || c >= 0x80; }

/// A line from i: its content [i, *content_end) and the index after its LF; -1 when there
/// is no LF, -2 when the line is malformed (a CR not just before the LF, or a bare LF in
/// strict mode).
static long ref_line(const unsigned char *b, size_t n, size_t i, size_t *content_end, int strict) {
    size_t j = i;
    while (j < n && b[j] != '\n') j++;
    if (j == n) return -1;
    size_t e = j;
    if (e > i && b[e - 1] == '\r') e--;
    else if (strict) return -2;
    for (size_t k = i; k < e; k++)
        if (b[k] == '\r') return -2;
    *content_end = e;
    return (long)(j + 1);
}

/// The head length if b[0 ..< n] starts with a valid complete head within the limits,
/// else -1; the fields as the parser reports them.
static long ref_parse(const unsigned char *b, size_t n, const struct gs_http_limits *lim,
                      struct gs_http_request *req, struct gs_http_header *hs) {
    int strict = (lim->flags & GS_HTTP_STRICT_CRLF) != 0;
    size_t i = 0, e;
    long next;
    for (;;) {
        if (i < n && b[i] == '\n' && !strict) i++;
        else if (i + 1 < n && b[i] == '\r' && b[i + 1] == '\n') i += 2;
        else break;
    }
    if ((next = ref_line(b, n, i, &e, strict)) < 0) return -1;
    if (e > lim->max_request_line) return -1;
    // exactly two spaces
    size_t sp1 = i, sp2;
    while (sp1 < e && b[sp1] != ' ') sp1++;
    if (sp1 == e) return -1;
    sp2 = sp1 + 1;
    while (sp2 < e && b[sp2] != ' ') sp2++;
    if (sp2 == e) return -1;
    for (size_t k = sp2 + 1; k < e; k++)
        if (b[k] == ' ') return -1;
    if (sp1 == i || sp2 == sp1 + 1) return -1;
    for (size_t k = i; k < sp1; k++)
        if (!ref_token(b[k])) return -1;
    for (size_t k = sp1 + 1; k < sp2; k++)
        if (!ref_vchar(b[k])) return -1;
    if (e - (sp2 + 1) != 8 || memcmp(b + sp2 + 1, "HTTP/1.", 7) || (b[e - 1] != '0' && b[e - 1] != '1')) return -1;
    req->method = mark(i, sp1);
    req->target = mark(sp1 + 1, sp2);
    req->minor_version = (uint8_t)(b[e - 1] - '0');
    size_t hs0 = (size_t)next, count = 0;
    i = hs0;
    for (;;) {
        if ((next = ref_line(b, n, i, &e, strict)) < 0) return -1;
        if ((size_t)next - hs0 > lim->max_header_size) return -1;
        if (e == i) break;
        if (count == lim->max_headers) return -1;
        size_t colon = i;
        while (colon < e && b[colon] != ':') colon++;
        if (colon == e || colon == i) return -1;
        for (size_t k = i; k < colon; k++)
            if (!ref_token(b[k])) return -1;
        size_t v = colon + 1, ve = e;
        while (v < ve && (b[v] == ' ' || b[v] == '\t')) v++;
        while (ve > v && (b[ve - 1] == ' ' || b[ve - 1] == '\t')) ve--;
        for (size_t k = colon + 1; k < e; k++)
            if (!ref_vchar(b[k]) && b[k] != ' ' && b[k] != '\t') return -1;
        hs[count].name = mark(i, colon);
        hs[count].value = mark(v, ve);
        count++;
        i = (size_t)next;
    }
    req->num_headers = (uint32_t)count;
    return next;
}

static int ref_hex(unsigned char c) {
    const char *p = c ? strchr(hexdigits, c) : NULL;
    if (!p) return -1;
    int v = (int)(p - hexdigits);
    return v < 16 ? v : v - 6;
}

/// Decodes a whole chunked body non-incrementally: the decoded length (body in out) and
/// *after the bytes following it, or -1 (malformed), -2 (incomplete), -3 (over max_body),
/// -4 (trailers too large).
static long ref_chunked(const unsigned char *b, size_t n, uint64_t max_body, unsigned char *out, size_t *after) {
    const int strict = 1;   // chunked bodies: CRLF only
    size_t i = 0, o = 0, e;
    long next;
    for (;;) {
        next = ref_line(b, n, i, &e, strict);
        if (next == -1) return (n - i > 4096) ? -1 : -2;
        if (next < 0 || e - i + ((size_t)next - e) > 4096) return -1;   // the line with its end, at most 4096
        size_t k = i;
        uint64_t size = 0;
        if (k == e || ref_hex(b[k]) < 0) return -1;
        while (k < e && ref_hex(b[k]) >= 0) {
            if (size >> 60) return -1;
            size = size << 4 | (uint64_t)ref_hex(b[k]);
            k++;
        }
        while (k < e && (b[k] == ' ' || b[k] == '\t')) k++;
        if (k < e) {
            if (b[k] != ';') return -1;
            for (; k < e; k++)
                if ((b[k] < 0x20 && b[k] != '\t') || b[k] == 0x7F) return -1;
        }
        i = (size_t)next;
        if (size == 0) break;
        if (size > max_body - o) return -3;
        if (n - i < size) return -2;
        memcpy(out + o, b + i, size);
        o += size;
        i += size;
        if (i == n) return -2;
        if (b[i] == '\r') {
            if (i + 1 == n) return -2;
            if (b[i + 1] != '\n') return -1;
            i += 2;
        } else if (b[i] == '\n' && !strict) {
            i += 1;
        } else {
            return -1;
        }
    }
    size_t t0 = i;
    for (;;) {
        next = ref_line(b, n, i, &e, strict);
        if (next == -1) return (n - t0 > 65536) ? -4 : -2;
        if (next == -2) {
            // which error comes first, a bad byte or the size: the decoder reads in order
            return -1;
        }
        if ((size_t)next - t0 > 65536) return -4;
        if (e == i) break;
        size_t k = i;
        if (!ref_token(b[k])) return -1;
        while (k < e && ref_token(b[k])) k++;
        if (k == e || b[k] != ':') return -1;
        for (k++; k < e; k++)
            if (!ref_vchar(b[k]) && b[k] != ' ' && b[k] != '\t') return -1;
        i = (size_t)next;
    }
    *after = n - (size_t)next;
    return (long)o;
}

static long ref_percent(const unsigned char *s, size_t n, unsigned char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n) return -1;
        int h = ref_hex(s[i + 1]), l = ref_hex(s[i + 2]);
        if (h < 0 || l < 0 || (h == 0 && l == 0)) return -1;
        out[o++] = (unsigned char)(h * 16 + l);
        i += 2;
    }
    return (long)o;
}

/// The body framing of a parsed head, by RFC 9112 §6 as the header promises it, spelled
/// out apart from the parser: GS_HTTP_BODY_* with *cl, or the error.
static int ref_framing(const unsigned char *b, const struct gs_http_request *q, const struct gs_http_header *h, uint64_t *cl) {
    int bad = 0, has_cl = 0, has_te = 0;
    uint64_t length = 0;
    char list[8192];
    size_t list_len = 0;
    for (uint32_t i = 0; i < q->num_headers; i++) {
        char name[32];
        size_t nl = h[i].name.len;
        if (nl >= sizeof name) continue;
        for (size_t k = 0; k < nl; k++) {
            char c = (char)b[h[i].name.off + k];
            name[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        name[nl] = 0;
        const unsigned char *v = b + h[i].value.off;
        size_t vl = h[i].value.len;
        if (!strcmp(name, "content-length")) {
            char digits[64];
            int ok = vl > 0 && vl < sizeof digits;
            for (size_t k = 0; ok && k < vl; k++) ok = v[k] >= '0' && v[k] <= '9';
            if (ok) {
                size_t z = 0;
                while (z + 1 < vl && v[z] == '0') z++;
                memcpy(digits, v + z, vl - z);
                digits[vl - z] = 0;
                ok = vl - z < 19 || (vl - z == 19 && strcmp(digits, "9223372036854775807") <= 0);
            }
            if (!ok) {
                bad = 1;
                continue;
            }
            uint64_t x = strtoull(digits, NULL, 10);
            if (has_cl && x != length) bad = 1;
            has_cl = 1;
            length = x;
        } else if (!strcmp(name, "transfer-encoding")) {
            has_te = 1;
            if (list_len + vl + 1 < sizeof list) {
                list[list_len++] = ',';
                memcpy(list + list_len, v, vl);
                list_len += vl;
            }
        }
    }
    if (bad) return GS_HTTP_BAD_REQUEST;
    if (!has_te) {
        if (has_cl) *cl = length;
        return has_cl ? GS_HTTP_BODY_LENGTH : GS_HTTP_BODY_NONE;
    }
    if (has_cl || q->minor_version == 0) return GS_HTTP_BAD_REQUEST;
    // the joined list, element by element
    unsigned count = 0, chunked = 0;
    int last_chunked = 0;
    size_t i = 0;
    list[list_len] = 0;
    while (i <= list_len) {
        size_t e = i;
        while (e < list_len && list[e] != ',') e++;
        size_t s = i, t = e;
        while (s < t && (list[s] == ' ' || list[s] == '\t')) s++;
        while (t > s && (list[t - 1] == ' ' || list[t - 1] == '\t')) t--;
        i = e + 1;
        if (s == t) continue;
        size_t k = s;
        while (k < t && ref_token((unsigned char)list[k])) k++;
        if (k == s) return GS_HTTP_BAD_REQUEST;
        size_t tok_end = k;
        while (k < t && (list[k] == ' ' || list[k] == '\t')) k++;
        if (k < t && list[k] != ';') return GS_HTTP_BAD_REQUEST;
        int is = k == t && tok_end - s == 7 && gs_http_name_equal(list + s, 7, "chunked", 7);
        count++;
        chunked += (unsigned)is;
        last_chunked = is;
    }
    if (!count || !last_chunked || chunked > 1) return GS_HTTP_BAD_REQUEST;
    return count > 1 ? GS_HTTP_NOT_IMPLEMENTED : GS_HTTP_BODY_CHUNKED;
}

// MARK: - Checks

static const struct gs_http_limits default_limits = GS_HTTP_LIMITS_DEFAULT;

static int span_eq(struct gs_http_span a, struct gs_http_span b) { return a.off == b.off && a.len == b.len; }

static void check_spans_inside(const struct gs_http_request *q, const struct gs_http_header *h, size_t head) {
    const struct gs_http_span *s[] = { &q->method, &q->target, &q->path, &q->query, &q->authority };
    for (size_t i = 0; i < 5; i++) CHECK((size_t)s[i]->off + s[i]->len <= head, "span %zu outside the head", i);
    for (uint32_t i = 0; i < q->num_headers; i++) {
        CHECK((size_t)h[i].name.off + h[i].name.len <= head, "header name %u outside", i);
        CHECK((size_t)h[i].value.off + h[i].value.len <= head, "header value %u outside", i);
    }
}

/// Parses p[0 ..< n] from a buffer ending exactly at its end.
static ptrdiff_t parse_exact(const unsigned char *p, size_t n, size_t last_len, const struct gs_http_limits *lim,
                             struct gs_http_request *req, struct gs_http_header *hs) {
    unsigned char *b = exact(p, n);
    ptrdiff_t r = gs_http_parse_request((const char *)b, n, last_len, lim, req, hs);
    free(b);
    return r;
}

static void same_parse(const struct gs_http_request *a, const struct gs_http_header *ah,
                       const struct gs_http_request *b, const struct gs_http_header *bh, const char *what) {
    CHECK(span_eq(a->method, b->method) && span_eq(a->target, b->target) && span_eq(a->path, b->path) &&
          span_eq(a->query, b->query) && span_eq(a->authority, b->authority) && a->has_query == b->has_query &&
          a->form == b->form && a->minor_version == b->minor_version && a->num_headers == b->num_headers,
          "%s: request fields differ", what);
    for (uint32_t i = 0; i < a->num_headers; i++)
        CHECK(span_eq(ah[i].name, bh[i].name) && span_eq(ah[i].value, bh[i].value), "%s: header %u differs", what, i);
}

/// Decodes a chunked body whole, split in two at every byte, and a byte at a time; all
/// must agree with each other and with the reference. Returns the whole's result.
static ptrdiff_t check_chunked(const unsigned char *body, size_t n, uint64_t max_body,
                               unsigned char *decoded, size_t *decoded_len, size_t *after) {
    static unsigned char whole_out[MAX_REQ + 64], ref_out[MAX_REQ + 64], piece_out[MAX_REQ + 64];
    struct gs_http_chunked d;

    unsigned char *b = exact(body, n);
    gs_http_chunked_init(&d, max_body);
    size_t size = n;
    ptrdiff_t whole = gs_http_decode_chunked(&d, (char *)b, &size);
    CHECK(size <= n, "decoded more than it was given");
    CHECK(d.total <= max_body, "total %" PRIu64 " over max_body %" PRIu64, d.total, max_body);
    memcpy(whole_out, b, size + (whole > 0 ? (size_t)whole : 0));
    size_t whole_size = size;
    free(b);
    CHECK(whole == GS_HTTP_INCOMPLETE || whole == GS_HTTP_BAD_REQUEST || whole == GS_HTTP_BODY_TOO_LARGE ||
          whole == GS_HTTP_HEADERS_TOO_LARGE || (whole >= 0 && (size_t)whole <= n - size), "odd result %td", whole);
    if (whole >= 0) CHECK(!memcmp(whole_out + whole_size, body + n - (size_t)whole, (size_t)whole), "the bytes after the body were not moved after the data");

    size_t ref_after = 0;
    long ref = ref_chunked(body, n, max_body, ref_out, &ref_after);
    if (ref >= 0) {
        CHECK(whole >= 0 && (size_t)ref == whole_size && !memcmp(ref_out, whole_out, whole_size) && (size_t)whole == ref_after,
              "the reference decodes %ld bytes with %zu after, the decoder said %td (%zu bytes)", ref, ref_after, whole, whole_size);
    } else if (ref == -2) {
        // the reference waits for a whole line; the decoder may refuse a bad byte in it already
        CHECK(whole == GS_HTTP_INCOMPLETE || whole == GS_HTTP_BAD_REQUEST, "the reference needs more bytes, the decoder says %td", whole);
    } else if (ref == -3) {
        CHECK(whole == GS_HTTP_BODY_TOO_LARGE, "the reference says too large, the decoder %td", whole);
    } else {
        // malformed or too large a trailer section: the reference measures a line before
        // reading its bytes, the decoder reads byte by byte, so either may come first
        CHECK(whole == GS_HTTP_BAD_REQUEST || whole == GS_HTTP_HEADERS_TOO_LARGE, "the reference says %ld, the decoder %td", ref, whole);
    }

    // two pieces
    for (size_t k = 0; k <= n; k++) {
        gs_http_chunked_init(&d, max_body);
        unsigned char *p1 = exact(body, k);
        size_t s1 = k;
        ptrdiff_t r1 = gs_http_decode_chunked(&d, (char *)p1, &s1);
        memcpy(piece_out, p1, s1);
        size_t got = s1;
        ptrdiff_t r = r1;
        if (r1 == GS_HTTP_INCOMPLETE) {
            unsigned char *p2 = exact(body + k, n - k);
            size_t s2 = n - k;
            r = gs_http_decode_chunked(&d, (char *)p2, &s2);
            memcpy(piece_out + got, p2, s2);
            got += s2;
            free(p2);
        } else if (r1 >= 0) {
            r = r1 + (ptrdiff_t)(n - k);   // the second piece is all after the body
        }
        free(p1);
        CHECK(r == whole, "split at %zu: %td, whole: %td", k, r, whole);
        if (whole != GS_HTTP_BAD_REQUEST && whole != GS_HTTP_BODY_TOO_LARGE && whole != GS_HTTP_HEADERS_TOO_LARGE)
            CHECK(got == whole_size && !memcmp(piece_out, whole_out, got), "split at %zu: other data", k);
    }
    // one byte at a time
    gs_http_chunked_init(&d, max_body);
    size_t got = 0;
    ptrdiff_t r = GS_HTTP_INCOMPLETE;
    size_t k = 0;
    for (; k < n && r == GS_HTTP_INCOMPLETE; k++) {
        unsigned char one = body[k];
        size_t s = 1;
        r = gs_http_decode_chunked(&d, (char *)&one, &s);
        if (s) piece_out[got++] = one;
    }
    if (r >= 0) r += (ptrdiff_t)(n - k);
    CHECK(r == whole, "byte by byte: %td, whole: %td", r, whole);
    if (whole >= 0 || whole == GS_HTTP_INCOMPLETE) CHECK(got == whole_size && !memcmp(piece_out, whole_out, got), "byte by byte: other data");

    if (decoded) memcpy(decoded, whole_out, whole_size);
    if (decoded_len) *decoded_len = whole_size;
    if (after) *after = whole >= 0 ? (size_t)whole : 0;
    return whole;
}

static void check_percent(const unsigned char *s, size_t n) {
    static unsigned char out[MAX_REQ], ref[MAX_REQ];
    unsigned char *b = exact(s, n);
    ptrdiff_t r = gs_http_percent_decode((const char *)b, n, (char *)out);
    long want = ref_percent(s, n, ref);
    CHECK(r == (want < 0 ? GS_HTTP_BAD_REQUEST : want), "percent-decoding: %td, the reference %ld", r, want);
    if (r >= 0) CHECK(!memcmp(out, ref, (size_t)r), "percent-decoding: other bytes");
    ptrdiff_t in_place = gs_http_percent_decode((const char *)b, n, (char *)b);
    CHECK(in_place == r && (r < 0 || !memcmp(b, ref, (size_t)r)), "percent-decoding in place differs");
    free(b);
}

/// A generated valid request: every field as written, whole, split and byte by byte.
static void check_valid(const struct built *r, const struct gs_http_limits *lim) {
    static struct gs_http_header hs[MAX_HEADERS], hs2[MAX_HEADERS];
    struct gs_http_request q, q2;
    phase = "valid";
    current = r->b;
    current_len = r->len;
    ptrdiff_t got = parse_exact(r->b, r->len, 0, lim, &q, hs);
    CHECK(got == (ptrdiff_t)r->head_len, "head length %td, written %zu", got, r->head_len);
    CHECK(span_eq(q.method, r->method), "method");
    CHECK(span_eq(q.target, r->target), "target");
    CHECK(span_eq(q.path, r->path), "path %u+%u, written %u+%u", q.path.off, q.path.len, r->path.off, r->path.len);
    CHECK(q.has_query == r->has_query && (!r->has_query || span_eq(q.query, r->query)), "query");
    CHECK(q.form == r->form, "form %d, written %d", q.form, r->form);
    if (r->form == GS_HTTP_ABSOLUTE_FORM) CHECK(span_eq(q.authority, r->authority), "authority");
    else CHECK(q.authority.len == 0, "authority outside the absolute form");
    CHECK(q.minor_version == r->minor, "version");
    CHECK(q.num_headers == r->num_headers, "%u headers, written %u", q.num_headers, r->num_headers);
    for (unsigned i = 0; i < r->num_headers; i++) {
        CHECK(span_eq(hs[i].name, r->headers[i].name), "header %u name", i);
        // an empty value is empty wherever it is said to be
        CHECK(hs[i].value.len == r->headers[i].value.len && (hs[i].value.len == 0 || hs[i].value.off == r->headers[i].value.off), "header %u value %u+%u, written %u+%u", i,
              hs[i].value.off, hs[i].value.len, r->headers[i].value.off, r->headers[i].value.len);
    }
    uint64_t cl = 0;
    int framing = gs_http_body_framing((const char *)r->b, &q, hs, &cl);
    CHECK(framing == r->framing, "framing %d, written %d", framing, r->framing);
    if (framing == GS_HTTP_BODY_LENGTH) CHECK(cl == r->content_length, "content length");
    check_percent(r->b + q.path.off, q.path.len);

    struct gs_http_request rq;
    static struct gs_http_header rh[MAX_HEADERS];
    long ref = ref_parse(r->b, r->len, lim, &rq, rh);
    CHECK(ref == got, "the reference parser says %ld", ref);

    // split in two at every byte
    for (size_t k = 0; k < r->head_len; k++) {
        ptrdiff_t first = parse_exact(r->b, k, 0, lim, &q2, hs2);
        CHECK(first == GS_HTTP_INCOMPLETE, "prefix of %zu bytes: %td", k, first);
        ptrdiff_t second = parse_exact(r->b, r->len, k, lim, &q2, hs2);
        CHECK(second == got, "split at %zu: %td", k, second);
        same_parse(&q, hs, &q2, hs2, "split");
    }
    // one byte more at a time, each parse told the last length
    unsigned char *b = exact(r->b, r->len);
    size_t last = 0;
    ptrdiff_t res = GS_HTTP_INCOMPLETE;
    size_t k = 1;
    for (; k <= r->len; k++) {
        memmove(b + r->len - k, r->b, k);
        res = gs_http_parse_request((const char *)(b + r->len - k), k, last, lim, &q2, hs2);
        if (res != GS_HTTP_INCOMPLETE) break;
        last = k;
    }
    free(b);
    CHECK(res == got && k == r->head_len, "byte by byte: %td at %zu bytes", res, k);
    same_parse(&q, hs, &q2, hs2, "byte by byte");

    if (r->framing == GS_HTTP_BODY_CHUNKED) {
        static unsigned char dec[MAX_REQ + 64];
        size_t dec_len = 0, after = 0;
        phase = "valid chunked body";
        ptrdiff_t c = check_chunked(r->b + r->head_len, r->len - r->head_len, UINT64_MAX, dec, &dec_len, &after);
        CHECK(c == (ptrdiff_t)r->after_len, "chunked: %td after the body, written %zu", c, r->after_len);
        CHECK(dec_len == r->body_len && !memcmp(dec, r->body, dec_len), "chunked: decoded %zu bytes, written %zu", dec_len, r->body_len);
        // and one byte short of the limit
        if (r->body_len > 0) {
            ptrdiff_t over = check_chunked(r->b + r->head_len, r->len - r->head_len, r->body_len - 1, NULL, NULL, NULL);
            CHECK(over == GS_HTTP_BODY_TOO_LARGE || over == GS_HTTP_BAD_REQUEST, "max_body one short: %td", over);
        }
    }
}

/// Any bytes: acceptance as the reference says, and splits agreeing with the whole.
static void check_any(const unsigned char *p, size_t n, const struct gs_http_limits *lim) {
    static struct gs_http_header hs[MAX_HEADERS + 1], hs2[MAX_HEADERS + 1], rh[MAX_HEADERS + 1];
    struct gs_http_request q, q2, rq;
    phase = "mutated";
    current = p;
    current_len = n;
    ptrdiff_t whole = parse_exact(p, n, 0, lim, &q, hs);
    CHECK(whole >= GS_HTTP_VERSION_NOT_SUPPORTED && whole <= (ptrdiff_t)n && whole != 0, "odd result %td", whole);
    long ref = ref_parse(p, n, lim, &rq, rh);
    if (whole >= 0) {
        check_spans_inside(&q, hs, (size_t)whole);
        CHECK(ref == whole, "accepted a head of %td bytes the reference refuses (%ld)", whole, ref);
        CHECK(span_eq(q.method, rq.method) && span_eq(q.target, rq.target) && q.minor_version == rq.minor_version &&
              q.num_headers == rq.num_headers, "the reference reads other fields");
        for (uint32_t i = 0; i < q.num_headers; i++)
            CHECK(span_eq(hs[i].name, rh[i].name) && span_eq(hs[i].value, rh[i].value), "the reference reads header %u otherwise", i);
        uint64_t cl = 0;
        int framing = gs_http_body_framing((const char *)p, &q, hs, &cl);
        uint64_t ref_cl = 0;
        int want = ref_framing(p, &q, hs, &ref_cl);
        CHECK(framing == want && (framing != GS_HTTP_BODY_LENGTH || cl == ref_cl), "framing %d (length %" PRIu64 "), the reference %d (%" PRIu64 ")",
              framing, cl, want, ref_cl);
        if (framing == GS_HTTP_BODY_CHUNKED) {
            phase = "mutated chunked body";
            check_chunked(p + whole, n - (size_t)whole, chance(50) ? UINT64_MAX : below(300), NULL, NULL, NULL);
            phase = "mutated";
        }
        check_percent(p + q.path.off, q.path.len);
    } else {
        CHECK(ref < 0, "refused (%td) a head the reference accepts (%ld bytes)", whole, ref);
    }
    size_t step = n > 2000 ? n / 500 : 1;   // long inputs: every byte near the start, then a sample
    for (size_t k = 0; k < n; k += (k < 600 ? 1 : step)) {
        ptrdiff_t first = parse_exact(p, k, 0, lim, &q2, hs2);
        CHECK(first == GS_HTTP_INCOMPLETE || first == whole, "prefix of %zu bytes: %td, whole: %td", k, first, whole);
        if (first == GS_HTTP_INCOMPLETE) {
            ptrdiff_t second = parse_exact(p, n, k, lim, &q2, hs2);
            CHECK(second == whole || (second == GS_HTTP_INCOMPLETE &&
                                      (whole == GS_HTTP_BAD_REQUEST || whole == GS_HTTP_VERSION_NOT_SUPPORTED || whole == GS_HTTP_TOO_MANY_HEADERS)),
                  "split at %zu: %td, whole: %td", k, second, whole);
            if (whole >= 0) same_parse(&q, hs, &q2, hs2, "split");
        }
    }
    unsigned char *b = exact(p, n);
    size_t last = 0, k = 1;
    ptrdiff_t res = n ? GS_HTTP_INCOMPLETE : whole;
    size_t limit = n < 1500 ? n : 1500;
    for (; k <= limit; k++) {
        memmove(b + n - k, p, k);
        res = gs_http_parse_request((const char *)(b + n - k), k, last, lim, &q2, hs2);
        if (res != GS_HTTP_INCOMPLETE) break;
        last = k;
    }
    free(b);
    CHECK(res == GS_HTTP_INCOMPLETE || res == whole, "byte by byte: %td, whole: %td", res, whole);
    if (k > n && n == limit)
        CHECK(res == whole || (res == GS_HTTP_INCOMPLETE && (whole == GS_HTTP_BAD_REQUEST || whole == GS_HTTP_VERSION_NOT_SUPPORTED || whole == GS_HTTP_TOO_MANY_HEADERS)),
              "byte by byte ends with %td, whole: %td", res, whole);
}

// MARK: - Mutations

static const char *corpus[] = {
    "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "GET /index.html?q=1&r=%20x HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
    "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    "GET http://example.com:8080/p?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /a HTTP/1.0\n\n",
    "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX: \t v \t\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    "GET / HTTP/2.0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
};

#define LINE(s) { s, sizeof(s) - 1 }
static const struct { const char *s; size_t n; } hostile_lines[] = {
    LINE("Transfer-Encoding: chunked\r\n"), LINE("Content-Length: 5\r\n"), LINE("Content-Length: 1,1\r\n"),
    LINE("Content-Length: +1\r\n"), LINE(" folded\r\n"), LINE("\tfolded\r\n"), LINE("X :y\r\n"), LINE("X: a\rb\r\n"),
    LINE("Transfer-Encoding: gzip, chunked\r\n"), LINE("Transfer-Encoding: chunked, gzip\r\n"),
    LINE("Content-Length: 99999999999999999999\r\n"), LINE(": empty\r\n"), LINE("X\0Y: z\r\n"), LINE("X: \x01\r\n"),
    LINE("X: \x7f\r\n"), LINE("Host: b\r\n"), LINE("\r\n"), LINE("\n"), LINE("Transfer-Encoding: \"chunked\"\r\n"),
    LINE("Content-Length: 5\r\nContent-Length: 6\r\n"), LINE("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
};
#undef LINE

static const unsigned char interesting[] = { '\r', '\n', ' ', '\t', ':', 0, 0x7F, 0x80, 0xFF, '%', '?', '/', ';', ',', '0', 'f', '\v', '"' };

/// A position, half the time at or next to a line end, a colon or a space: where the
/// syntax is.
static size_t position(const unsigned char *b, size_t n) {
    if (!n) return 0;
    size_t at = below(n);
    if (chance(50)) {
        for (size_t tries = 0; tries < 8; tries++) {
            size_t i = below(n);
            if (b[i] == '\r' || b[i] == '\n' || b[i] == ':' || b[i] == ' ' || b[i] == ';') {
                at = i + below(3);
                if (at > 0 && chance(30)) at--;
                break;
            }
        }
    }
    return at < n ? at : n - 1;
}

#define SNIPPET(s) { s, sizeof(s) - 1 }
static const struct { const char *s; size_t n; } chunk_snippets[] = {
    SNIPPET("ffffffffffffffff\r\n"), SNIPPET("10000000000000005\r\nhello\r\n"), SNIPPET("0000000000000000000000001\r\nx\r\n"),
    SNIPPET("5 ;a=b\r\nhello\r\n"), SNIPPET("5\r\nhelloXX"), SNIPPET("5\nhello\n"), SNIPPET("0\r\n\r\n"), SNIPPET("-5\r\n"),
    SNIPPET("5;\x01\r\n"), SNIPPET("5\r\r\n"), SNIPPET("7fffffffffffffff\r\n"), SNIPPET("\r\n"), SNIPPET("0x5\r\n"),
};
#undef SNIPPET

static size_t mutate(unsigned char *b, size_t n, size_t cap) {
    unsigned times = 1 + (unsigned)below(4);
    for (unsigned t = 0; t < times; t++) {
        size_t at = chance(50) ? position(b, n) : below(n + 1);
        switch (below(10)) {
        case 0:  // replace
            if (n) b[chance(50) ? position(b, n) : below(n)] = chance(50) ? interesting[below(sizeof interesting)] : (unsigned char)rnd();
            break;
        case 1:  // insert
            if (n < cap) {
                memmove(b + at + 1, b + at, n - at);
                b[at] = interesting[below(sizeof interesting)];
                n++;
            }
            break;
        case 2: {  // delete a few
            size_t d = 1 + below(4);
            if (at + d > n) d = n - at;
            memmove(b + at, b + at + d, n - at - d);
            n -= d;
            break;
        }
        case 3: {  // repeat a range
            if (!n) break;
            size_t from = below(n), len = 1 + below(40);
            if (from + len > n) len = n - from;
            if (n + len > cap) break;
            unsigned char range[40];
            memcpy(range, b + from, len);
            memmove(b + at + len, b + at, n - at);
            memcpy(b + at, range, len);
            n += len;
            break;
        }
        case 4: {  // CRLF <-> LF
            for (size_t i = 0; i + 1 < n; i++) {
                if (b[i] == '\r' && b[i + 1] == '\n' && chance(30)) {
                    memmove(b + i, b + i + 1, n - i - 1);
                    n--;
                } else if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r') && chance(30) && n < cap) {
                    memmove(b + i + 1, b + i, n - i);
                    b[i] = '\r';
                    n++;
                    i++;
                }
            }
            break;
        }
        case 5: {  // a hostile line after some line end
            size_t which = below(sizeof hostile_lines / sizeof *hostile_lines);
            const char *l = hostile_lines[which].s;
            size_t len = hostile_lines[which].n;
            size_t nl = at;
            while (nl < n && b[nl] != '\n') nl++;
            if (nl < n) nl++;
            if (n + len > cap) break;
            memmove(b + nl + len, b + nl, n - nl);
            memcpy(b + nl, l, len);
            n += len;
            break;
        }
        case 6:  // truncate
            n = at;
            break;
        case 7:  // a byte one off
            if (n) b[below(n)] += chance(50) ? 1 : (unsigned char)-1;
            break;
        case 8: {  // a chunk-size line (or a piece of one) after some line end
            size_t which = below(sizeof chunk_snippets / sizeof *chunk_snippets);
            size_t len = chunk_snippets[which].n, nl = at;
            while (nl < n && b[nl] != '\n') nl++;
            if (nl < n) nl++;
            if (n + len > cap) break;
            memmove(b + nl + len, b + nl, n - nl);
            memcpy(b + nl, chunk_snippets[which].s, len);
            n += len;
            break;
        }
        default:  // a random digit or hex letter (sizes, versions)
            if (n) b[position(b, n)] = (unsigned char)"0123456789abcdefx."[below(18)];
            break;
        }
    }
    return n;
}

/// Limits for bytes b[0 ..< n]: the defaults, random ones, or (most often) ones at the
/// edges of this input: its request line, header section and field count, one off.
static void random_limits(struct gs_http_limits *lim, const unsigned char *b, size_t n) {
    *lim = default_limits;
    unsigned how = (unsigned)below(10);
    if (how >= 3 && how < 5) {
        lim->max_request_line = (uint32_t)below(n + 10);
        lim->max_header_size = (uint32_t)below(n + 10);
        lim->max_headers = (uint32_t)below(12);
    } else if (how >= 5) {
        // the input's own sizes, as the reference reads them (when it reads them at all)
        size_t lf = 0, lines = 0, blank = n;
        while (lf < n && (b[lf] == '\r' || b[lf] == '\n')) lf++;
        while (lf < n && b[lf] != '\n') lf++;
        size_t content = (lf > 0 && lf < n && b[lf - 1] == '\r') ? lf - 1 : lf;
        for (size_t i = lf + 1; i < n; i++) {
            if (b[i - 1] == '\n' && (b[i] == '\n' || (b[i] == '\r' && i + 1 < n && b[i + 1] == '\n'))) {
                blank = i + (b[i] == '\r' ? 2 : 1);
                break;
            }
            if (b[i] == '\n') lines++;
        }
        long d = (long)below(3) - 1;   // -1, 0, +1
        if (chance(60)) lim->max_request_line = (uint32_t)((long)content + d < 0 ? 0 : (long)content + d);
        d = (long)below(3) - 1;
        if (chance(60) && blank <= n) {
            long hs = (long)blank - (long)(lf + 1);
            lim->max_header_size = (uint32_t)(hs + d < 0 ? 0 : hs + d);
        }
        d = (long)below(3) - 1;
        if (chance(60)) lim->max_headers = (uint32_t)((long)lines + d < 0 ? 0 : (long)lines + d);
        if (lim->max_headers > MAX_HEADERS) lim->max_headers = MAX_HEADERS;
    }
    if (chance(15)) lim->flags = GS_HTTP_STRICT_CRLF;
}

/// A chunked body of random pieces, valid and not: sizes in every spelling, extensions,
/// data with the right and the wrong line ends, hostile size lines, trailers.
static size_t chunk_grammar(unsigned char *b, size_t cap) {
    size_t n = 0;
    unsigned pieces = 1 + (unsigned)below(8);
    for (unsigned i = 0; i < pieces && n + 200 < cap; i++) {
        unsigned k = (unsigned)below(10);
        if (k < 5) {
            size_t size = below(20);
            if (chance(50)) n += (size_t)snprintf((char *)b + n, cap - n, "%zx", size);
            else n += (size_t)snprintf((char *)b + n, cap - n, "%0*zX", (int)below(20), size);
            if (chance(20)) n += (size_t)snprintf((char *)b + n, cap - n, "%s;%s", chance(30) ? " " : "", chance(50) ? "a=b" : "x=\"1;2\"");
            n += (size_t)snprintf((char *)b + n, cap - n, chance(90) ? "\r\n" : "\n");
            for (size_t j = 0; j < size; j++) b[n++] = (unsigned char)(chance(50) ? 'd' : rnd());
            n += (size_t)snprintf((char *)b + n, cap - n, "%s", chance(85) ? "\r\n" : chance(50) ? "\n" : chance(50) ? "\r" : "X\r\n");
        } else if (k < 8) {
            size_t which = below(sizeof chunk_snippets / sizeof *chunk_snippets);
            memcpy(b + n, chunk_snippets[which].s, chunk_snippets[which].n);
            n += chunk_snippets[which].n;
        } else {
            n += (size_t)snprintf((char *)b + n, cap - n, "0\r\n");
            if (chance(50)) n += (size_t)snprintf((char *)b + n, cap - n, "%s", chance(80) ? "Trailer: v\r\n" : chance(50) ? " folded\r\n" : "Bad Name: v\r\n");
            n += (size_t)snprintf((char *)b + n, cap - n, "%s", chance(90) ? "\r\n" : "\n");
            if (chance(50)) break;
        }
    }
    return n;
}

// MARK: - Content-Length and Transfer-Encoding references

static void check_field_helpers(void) {
    static const char alphabet[] = "0123456789 ,+-\tchunkedgzipCHUNKED;=\"x";
    char v[40];
    size_t n = below(sizeof v);
    for (size_t i = 0; i < n; i++) v[i] = alphabet[below(sizeof alphabet - 1)];
    if (chance(20)) {   // a long number, around the overflow
        n = 18 + below(4);
        for (size_t i = 0; i < n; i++) v[i] = (char)('0' + below(10));
        if (chance(30)) memcpy(v, "9223372036854775807", (n = 19));
        if (chance(30)) memcpy(v, "9223372036854775808", (n = 19));
    }
    current = (const unsigned char *)v;
    current_len = n;
    phase = "content-length";
    uint64_t got = 0;
    int r = gs_http_parse_content_length(v, n, &got);
    int digits = n > 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9') digits = 0;
    if (!digits) {
        CHECK(r == GS_HTTP_BAD_REQUEST, "accepted a Content-Length that is not digits");
    } else {
        // the value in long arithmetic: past INT64_MAX is refused
        char tmp[64];
        size_t z = 0;
        while (z + 1 < n && v[z] == '0') z++;
        size_t d = n - z;
        memcpy(tmp, v + z, d);
        tmp[d] = 0;
        int fits = d < 19 || (d == 19 && strcmp(tmp, "9223372036854775807") <= 0);
        if (fits) CHECK(r == 0 && got == strtoull(tmp, NULL, 10), "Content-Length %s read as %" PRIu64, tmp, got);
        else CHECK(r == GS_HTTP_BAD_REQUEST, "accepted Content-Length %s past INT64_MAX", tmp);
    }
    phase = "transfer-encoding";
    int te = gs_http_transfer_encoding(v, n);
    CHECK(te == GS_HTTP_BODY_CHUNKED || te == GS_HTTP_BAD_REQUEST || te == GS_HTTP_NOT_IMPLEMENTED, "odd result %d", te);
    if (te == GS_HTTP_BODY_CHUNKED) {
        // exactly one element, "chunked" in any case, with OWS and empty elements around it
        size_t s = 0, e = n;
        while (s < e && (v[s] == ' ' || v[s] == '\t' || v[s] == ',')) s++;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t' || v[e - 1] == ',')) e--;
        CHECK(gs_http_name_equal(v + s, e - s, "chunked", 7), "took a Transfer-Encoding that is not just chunked as chunked");
    }
}

// MARK: - Modes

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void stuck(int sig) {
    (void)sig;
    // a hang is a failure like any other: say which round it was (not async-signal-safe,
    // but the process is ending anyway)
    fprintf(stderr, "parser_fuzz: FAILED: stuck in round %lu (%s), seed %" PRIu64 " (GSOCKD_FUZZ_SEED=%" PRIu64 " replays)\n",
            round_no, phase, seed, seed);
    if (current) dump("  input", current, current_len);
    _exit(1);
}

static int fuzz(void) {
    const char *s = getenv("GSOCKD_FUZZ_SEED");
    seed = (s && *s) ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    const char *sec = getenv("GSOCKD_FUZZ_SECONDS");
    double seconds = (sec && *sec) ? atof(sec) : 3.0;
    const char *rounds_env = getenv("GSOCKD_FUZZ_ROUNDS");
    unsigned long max_rounds = (rounds_env && *rounds_env) ? strtoul(rounds_env, NULL, 10) : 0;
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    if (!rng) rng = 1;
    signal(SIGALRM, stuck);
    alarm((unsigned)(seconds * 4) + 60);
    printf("parser_fuzz: seed %" PRIu64 " (GSOCKD_FUZZ_SEED=%" PRIu64 " replays), %.1f s\n", seed, seed, seconds);
    fflush(stdout);
    static struct built r;
    static unsigned char m[MAX_REQ + 64];
    unsigned long valid = 0, mutated = 0, accepted = 0, random_inputs = 0, chunked = 0;
    double start = now(), deadline = start + seconds;
    struct gen_opts o = { 0, 100 };
    for (round_no = 0; (max_rounds ? round_no < max_rounds : now() < deadline); round_no++) {
        struct gs_http_limits lim = default_limits;
        if (chance(10)) lim.flags = GS_HTTP_STRICT_CRLF;
        o.h11 = chance(20);
        o.max_headers = chance(10) ? 1 + (int)below(5) : 100;
        lim.max_headers = (uint32_t)o.max_headers;
        unsigned kind = (unsigned)below(10);
        size_t n;
        if (kind < 3) {
            generate(&r, &o);
            if (r.overflow) continue;
            if (lim.flags & GS_HTTP_STRICT_CRLF) {
                // strict: the generator's bare LFs are errors, so only CRLF requests count as valid
                int bare = 0;
                for (size_t i = 0; i < r.len; i++)
                    if (r.b[i] == '\n' && (i == 0 || r.b[i - 1] != '\r')) bare = 1;
                if (bare) lim.flags = 0;
            }
            check_valid(&r, &lim);
            valid++;
            if (r.framing == GS_HTTP_BODY_CHUNKED) chunked++;
            continue;
        }
        if (kind < 9) {
            if (chance(40)) {
                const char *c = corpus[below(sizeof corpus / sizeof *corpus)];
                n = strlen(c);
                memcpy(m, c, n);
            } else {
                generate(&r, &o);
                if (r.overflow) continue;
                n = r.len;
                memcpy(m, r.b, n);
            }
            n = mutate(m, n, sizeof m);
            mutated++;
        } else {
            n = below(chance(80) ? 200 : 3000);
            static const char alpha[] = "GET / HTTP/1.1\r\n: \tHost:abc0;=?%";
            for (size_t i = 0; i < n; i++) m[i] = chance(90) ? (unsigned char)alpha[below(sizeof alpha - 1)] : (unsigned char)rnd();
            random_inputs++;
        }
        random_limits(&lim, m, n);
        check_any(m, n, &lim);
        struct gs_http_request q;
        static struct gs_http_header hs[MAX_HEADERS + 1];
        if (gs_http_parse_request((const char *)m, n, 0, &lim, &q, hs) >= 0) accepted++;
        if (chance(30)) {
            // a mutated chunked body on its own
            generate(&r, &o);
            if (!r.overflow && r.framing == GS_HTTP_BODY_CHUNKED) {
                n = r.len - r.head_len;
                memcpy(m, r.b + r.head_len, n);
                n = mutate(m, n, sizeof m);
                phase = "mutated chunked body";
                current = m;
                current_len = n;
                check_chunked(m, n, chance(50) ? UINT64_MAX : below(500), NULL, NULL, NULL);
                chunked++;
            }
        }
        {
            n = chunk_grammar(m, sizeof m);
            phase = "chunked pieces";
            current = m;
            current_len = n;
            check_chunked(m, n, chance(50) ? UINT64_MAX : below(100), NULL, NULL, NULL);
        }
        check_field_helpers();
        {
            // percent-decoding of short strings heavy in escapes
            static const char pct_alpha[] = "%%%0012aAfFgz/+";
            unsigned char ps[24];
            size_t pn = below(sizeof ps);
            for (size_t i = 0; i < pn; i++) ps[i] = (unsigned char)pct_alpha[below(sizeof pct_alpha - 1)];
            phase = "percent-decoding";
            current = ps;
            current_len = pn;
            check_percent(ps, pn);
        }
    }
    double took = now() - start;
    printf("parser_fuzz: %lu rounds in %.2f s: %lu valid requests (each split at every byte), %lu mutated (%lu of them "
           "still accepted), %lu random, %lu chunked bodies; no failure\n",
           round_no, took, valid, mutated, accepted, random_inputs, chunked);
    return 0;
}

// An older Firefox request with long Accept-* fields (464 bytes).
static const char firefox_request[] =
    "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
    "Host: www.kittyhell.com\r\n"
    "User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_3; ja-JP-mac; rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3 Pathtraq/0.9\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n"
    "Accept-Encoding: gzip,deflate\r\n"
    "Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n"
    "Keep-Alive: 115\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

// What a browser sends today for a page's API call, 400 bytes or so.
static const char chrome_request[] =
    "GET /api/items?page=2&sort=desc HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "Connection: keep-alive\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=4f8a2c9e; theme=dark\r\n"
    "\r\n";

/// The best of 15 timings of `iterations` parses of `req`, in ns per parse.
static double time_parse(const char *req, size_t len, unsigned long iterations, unsigned *headers) {
    struct gs_http_limits lim = GS_HTTP_LIMITS_DEFAULT;
    struct gs_http_request q;
    struct gs_http_header hs[100];
    volatile ptrdiff_t sink = 0;
    for (unsigned long i = 0; i < iterations / 10; i++) sink += gs_http_parse_request(req, len, 0, &lim, &q, hs);
    double best = 1e9;
    for (int rep = 0; rep < 15; rep++) {
        double t0 = now();
        for (unsigned long i = 0; i < iterations; i++) sink += gs_http_parse_request(req, len, 0, &lim, &q, hs);
        double ns = (now() - t0) * 1e9 / (double)iterations;
        if (ns < best) best = ns;
    }
    if (sink != (ptrdiff_t)len * (ptrdiff_t)(iterations / 10 + 15 * iterations)) {
        fprintf(stderr, "bench: the request did not parse\n");
        exit(1);
    }
    *headers = q.num_headers;
    return best;
}

static int bench(unsigned long iterations) {
    unsigned headers;
    size_t clen = sizeof chrome_request - 1;
    double ns = time_parse(chrome_request, clen, iterations, &headers);
    printf("bench: %zu-byte browser request, %u headers: %.1f ns per parse (best of 15 x %lu), %.2f ns/byte\n",
           clen, headers, ns, iterations, ns / (double)clen);
    const size_t len = sizeof firefox_request - 1;
    ns = time_parse(firefox_request, len, iterations, &headers);
    printf("bench: %zu-byte Firefox request, %u headers: %.1f ns per parse, %.2f ns/byte\n",
           len, headers, ns, ns / (double)len);
    struct gs_http_limits lim = GS_HTTP_LIMITS_DEFAULT;
    struct gs_http_request q;
    struct gs_http_header hs[100];
    volatile ptrdiff_t sink = 0;
    // framing and the header lookups a server makes per request
    double t0 = now();
    uint64_t cl;
    for (unsigned long i = 0; i < iterations; i++) {
        sink += gs_http_parse_request(firefox_request, len, 0, &lim, &q, hs);
        sink += gs_http_body_framing(firefox_request, &q, hs, &cl);
        sink += gs_http_find_header(firefox_request, hs, q.num_headers, 0, "connection", 10);
    }
    printf("bench: the same, parse + body framing + one header lookup: %.1f ns\n", (now() - t0) * 1e9 / (double)iterations);
    // a re-parse after one more byte arrived (last_len), for a head still incomplete
    t0 = now();
    for (unsigned long i = 0; i < iterations; i++) sink += gs_http_parse_request(firefox_request, len - 1, len - 2, &lim, &q, hs);
    printf("bench: re-parse of an incomplete %zu-byte head with last_len: %.1f ns\n", len - 1, (now() - t0) * 1e9 / (double)iterations);
    // chunked: 64 KiB in 4 KiB chunks
    static char body[80000], work[80000];
    size_t bn = 0;
    for (int c = 0; c < 16; c++) {
        bn += (size_t)sprintf(body + bn, "1000\r\n");
        memset(body + bn, 'x', 4096);
        bn += 4096;
        bn += (size_t)sprintf(body + bn, "\r\n");
    }
    bn += (size_t)sprintf(body + bn, "0\r\n\r\n");
    unsigned long reps = iterations / 1000 + 1;
    t0 = now();
    for (unsigned long i = 0; i < reps; i++) {
        struct gs_http_chunked d;
        gs_http_chunked_init(&d, UINT64_MAX);
        memcpy(work, body, bn);
        size_t s = bn;
        sink += gs_http_decode_chunked(&d, work, &s);
    }
    double per = (now() - t0) / (double)reps;
    printf("bench: chunked 64 KiB body in 4 KiB chunks (with a memcpy of it): %.1f us, %.2f GB/s\n", per * 1e6, 65536 / per / 1e9);
    (void)sink;
    return 0;
}

static void json_hex(const char *key, const unsigned char *p, size_t n) {
    printf("\"%s\":\"", key);
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\"");
}

static int gen(unsigned long count) {
    const char *s = getenv("GSOCKD_FUZZ_SEED");
    seed = (s && *s) ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    static struct built r;
    struct gen_opts o = { 1, 100 };
    struct gs_http_limits lim = GS_HTTP_LIMITS_DEFAULT;
    static struct gs_http_header hs[100];
    static unsigned char work[MAX_REQ + 64], path[MAX_REQ];
    for (unsigned long i = 0; i < count; i++) {
        do generate(&r, &o);
        while (r.overflow);
        struct gs_http_request q;
        ptrdiff_t head = gs_http_parse_request((const char *)r.b, r.len, 0, &lim, &q, hs);
        printf("{\"seed\":%" PRIu64 ",\"i\":%lu,\"head\":%td,", seed, i, head);
        json_hex("raw", r.b, r.len);
        if (head < 0) {
            printf("}\n");
            continue;
        }
        printf(",");
        json_hex("method", r.b + q.method.off, q.method.len);
        printf(",");
        json_hex("target", r.b + q.target.off, q.target.len);
        printf(",");
        json_hex("path", r.b + q.path.off, q.path.len);
        printf(",\"form\":%d,\"query\":", q.form);
        if (q.has_query) {
            printf("\"");
            for (size_t k = 0; k < q.query.len; k++) printf("%02x", r.b[q.query.off + k]);
            printf("\"");
        } else {
            printf("null");
        }
        ptrdiff_t pl = gs_http_percent_decode((const char *)r.b + q.path.off, q.path.len, (char *)path);
        printf(",\"decoded_path\":");
        if (pl >= 0) {
            printf("\"");
            for (ptrdiff_t k = 0; k < pl; k++) printf("%02x", path[k]);
            printf("\"");
        } else {
            printf("null");
        }
        printf(",\"version\":\"1.%d\",\"headers\":[", q.minor_version);
        for (uint32_t h = 0; h < q.num_headers; h++) {
            printf(h ? ",[" : "[");
            printf("\"");
            for (size_t k = 0; k < hs[h].name.len; k++) printf("%02x", r.b[hs[h].name.off + k]);
            printf("\",\"");
            for (size_t k = 0; k < hs[h].value.len; k++) printf("%02x", r.b[hs[h].value.off + k]);
            printf("\"]");
        }
        uint64_t cl = 0;
        int framing = gs_http_body_framing((const char *)r.b, &q, hs, &cl);
        printf("],\"framing\":%d,", framing);
        size_t body_len = 0, after = 0;
        if (framing == GS_HTTP_BODY_LENGTH) {
            body_len = (size_t)cl;
            memcpy(work, r.b + head, body_len);
            after = r.len - (size_t)head - body_len;
        } else if (framing == GS_HTTP_BODY_CHUNKED) {
            struct gs_http_chunked d;
            gs_http_chunked_init(&d, UINT64_MAX);
            size_t n = r.len - (size_t)head;
            memcpy(work, r.b + head, n);
            size_t sz = n;
            ptrdiff_t left = gs_http_decode_chunked(&d, (char *)work, &sz);
            body_len = sz;
            after = left >= 0 ? (size_t)left : 0;
            printf("\"chunked_result\":%td,", left);
        } else {
            after = r.len - (size_t)head;
        }
        json_hex("body", work, body_len);
        printf(",\"after\":%zu}\n", after);
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (argc >= 2 && !strcmp(argv[1], "bench")) return bench(argc >= 3 ? strtoul(argv[2], NULL, 10) : 2000000);
    if (argc >= 2 && !strcmp(argv[1], "gen")) return gen(argc >= 3 ? strtoul(argv[2], NULL, 10) : 1000);
    if (argc >= 2) {
        fprintf(stderr, "usage: %s [bench [N] | gen N]\n", argv[0]);
        return 2;
    }
    return fuzz();
}
