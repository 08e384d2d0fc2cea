#!/usr/bin/env python3
"""Shows that the HTTP parser's fuzz harness can fail: plants one bug at a time in a copy of
Sources/CHTTP/http_parser.c (each a plausible slip: an off-by-one limit, a missing check, a
smuggling leniency, a read past the end), builds the harness against it with ASan and
UBSan, fuzzes for a few seconds, and reports whether the harness caught it. Not part of
`gsockd test` (it takes a few minutes); run it after changing the parser or the harness:

    python3 tests/http/support/parser_mutants.py [NAME-SUBSTRING ...]

Exits 1 when a planted bug goes unnoticed.
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.normpath(os.path.join(here, "..", "..", ".."))
source = open(os.path.join(root, "Sources/CHTTP/http_parser.c")).read()

# (name, text in http_parser.c, what it becomes)
mutants=[
 ("DEL in values", "| EQUAL(w, 0x7F);\n        if (hit) return p + (__builtin_ctzll(hit) >> 3);\n        p += 8;\n    }\n#endif\n    while (p < end && ((cls", "; if (hit) return p + (__builtin_ctzll(hit) >> 3); p += 8; }\n#endif\n    while (p < end && ((cls"),
 ("no EOF check after CR", "            ++p;                                    \\\n            NEED_BYTE();                            \\\n", "            ++p;                                    \\\n"),
 ("fast path from last_len-1", "buf + (last_len > 3 ? last_len - 3 : 0)", "buf + (last_len > 1 ? last_len - 1 : 0)"),
 ("anything ends chunk data", "if (c == '\\r') d->state = CH_DATA_LF;\n            else goto bad;", "if (c == '\\r') d->state = CH_DATA_LF;\n            else d->state = CH_SIZE_START;"),
 ("no hex overflow check", "if (d->left >> 60) goto bad;", ""),
 ("%00 accepted", "(hi | lo) == 0", "0"),
 ("empty field name", "if (p == f || *p != ':')", "if (*p != ':')"),
 ("fast path ignores header limit", "return len - (size_t)(lf + 1 - buf) > max_hs;", "return 0;"),
 ("request line limit off by one", "if ((size_t)(line_end - buf) > max_rl) return GS_HTTP_URI_TOO_LONG;", "if ((size_t)(line_end - buf) > max_rl + 1) return GS_HTTP_URI_TOO_LONG;"),
 ("header limit off by one", "end = ((size_t)(buf_end - p) > max_hs) ? p + max_hs : buf_end;", "end = ((size_t)(buf_end - p) > max_hs + 1) ? p + max_hs + 1 : buf_end;"),
 ("too many headers off by one", "if (n == max_headers) return GS_HTTP_TOO_MANY_HEADERS;", "if (n == max_headers + 1) return GS_HTTP_TOO_MANY_HEADERS;"),
 ("trailing OWS kept", "while (v_end > v && is_ows(v_end[-1])) --v_end;", ""),
 ("bare CR in value", "if (*p != '\\t') break;\n            ++p;", "if (*p != '\\t' && !(*p == '\\r' && p + 1 < end && p[1] != '\\n')) break;\n            ++p;"),
 ("SWAR target ctz off", "if (hit) return p + (__builtin_ctzll(hit) >> 3);\n        p += 8;\n    }\n#endif\n    while (p < end && (cls[*p] & C_VCHAR) && !(stop_at_query", "if (hit) return p + ((__builtin_ctzll(hit) + 1) >> 3);\n        p += 8;\n    }\n#endif\n    while (p < end && (cls[*p] & C_VCHAR) && !(stop_at_query"),
 ("chunked data overrun", "if (d->left < take) take = (size_t)d->left;", "if (d->left + 1 < take) take = (size_t)d->left + 1;"),
 ("max_body off by one", "} else if (d->left > d->max_body - d->total) {", "} else if (d->left > d->max_body - d->total + 1) {"),
 ("trailer value CTL", "else if (!((cls[c] & C_VCHAR) || is_ows(c))) goto bad;", ""),
 ("version 1.2 accepted", "if (major != '1' || minor > '1')", "if (major != '1' || minor > '2')"),
 ("chunk ext CTL", "else if ((c < 0x20 && c != '\\t') || c == 0x7F) goto bad;", ""),
 ("bare LF ends chunk data", "if (c == '\\r') d->state = CH_DATA_LF;\n            else goto bad;", "if (c == '\\r') d->state = CH_DATA_LF;\n            else if (c == '\\n') d->state = CH_SIZE_START;\n            else goto bad;"),
 ("percent decode reads past", "if (len - i < 3) return GS_HTTP_BAD_REQUEST;", "if (len - i < 2) return GS_HTTP_BAD_REQUEST;"),
 ("duplicate CL allowed different", "if (has_length && n != length) return GS_HTTP_BAD_REQUEST;", ""),
 ("CL plus TE allowed", "if (has_length || req->minor_version == 0) return GS_HTTP_BAD_REQUEST;", "if (req->minor_version == 0) return GS_HTTP_BAD_REQUEST;"),
 ("CL overflow", "if (n > (uint64_t)(INT64_MAX - (c - '0')) / 10) return GS_HTTP_BAD_REQUEST;", ""),
 ("TE chunked twice", "|| c->chunked > 1)", ")"),
 ("query split at last ?", "p = skip_target(p, end, q == NULL);", "p = skip_target(p, end, 1);"),
]


def main():
    only = sys.argv[1:]
    caught = missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, before, after in mutants:
            if only and not any(o in name for o in only):
                continue
            if before not in source:
                print("STALE  %s: its text is no longer in http_parser.c" % name)
                missed += 1
                continue
            mutant = os.path.join(tmp, "http_parser.c")
            open(mutant, "w").write(source.replace(before, after, 1))
            exe = os.path.join(tmp, "parser_fuzz")
            build = subprocess.run(
                ["cc", "-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                 "-I", os.path.join(root, "Sources/CHTTP/include"), os.path.join(root, "tests/http/parser_fuzz.c"),
                 mutant, "-o", exe], capture_output=True, text=True)
            if build.returncode:
                print("BROKEN %s: the mutant does not compile\n%s" % (name, build.stderr[:500]))
                missed += 1
                continue
            env = dict(os.environ, GSOCKD_FUZZ_SEED="11", GSOCKD_FUZZ_SECONDS="4")
            try:
                run = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=60)
                out = run.stdout + run.stderr
                found = [l for l in out.splitlines() if "FAILED" in l or "ERROR:" in l or "runtime error" in l]
                ok, how = run.returncode != 0, (found[0][:140] if found else "exit status %d" % run.returncode)
            except subprocess.TimeoutExpired:
                ok, how = True, "hung (the harness's own alarm or this timeout)"
            print(("caught %s: %s" if ok else "MISSED %s%s") % (name, how if ok else ""))
            caught += ok
            missed += not ok
    print("%d caught, %d missed" % (caught, missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
