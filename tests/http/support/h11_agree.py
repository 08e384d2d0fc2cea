#!/usr/bin/env python3
"""Compares gsockd's HTTP request parser with h11 on valid requests.

Reads, on standard input, the JSON lines of `parser_fuzz gen N` (each a generated request
and what our parser made of it) and parses each request again with h11 as a server
would: the head (method, target, version, every header name and value in order), the
body (Content-Length or chunked, decoded) and the bytes after it. Also checks our path and
query split against urllib's, and our percent-decoded path against
urllib.parse.unquote_to_bytes. Prints one line per disagreement (at most 20) and a
summary; exits 1 on any disagreement, 3 when h11 is not installed.
"""
import json
import sys
import urllib.parse

try:
    import h11
except ImportError:
    print("h11 is not installed (scripts/setup installs it)")
    sys.exit(3)


def h11_parse(raw):
    """(request, body, bytes after the message) as h11 reads raw."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    conn.receive_data(raw)
    request, body = None, bytearray()
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        elif event is h11.NEED_DATA:
            raise ValueError("h11 needs more data")
        else:
            raise ValueError("h11 event %r" % (event,))
    after, _closed = conn.trailing_data
    return request, bytes(body), bytes(after)


def main():
    problems, count = [], 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rec = json.loads(line)
        count += 1
        raw = bytes.fromhex(rec["raw"])
        where = "seed %s request %s" % (rec["seed"], rec["i"])

        def differ(what, ours, theirs):
            problems.append("%s: %s: ours %r, h11 %r\n  request %r" % (where, what, ours, theirs, raw[:300]))

        try:
            req, body, after = h11_parse(raw)
        except Exception as e:  # h11 refused what we generated as valid
            if rec["head"] >= 0:
                differ("acceptance", "parsed (%d-byte head)" % rec["head"], "refused: %s" % e)
            continue
        if rec["head"] < 0:
            differ("acceptance", "refused (%d)" % rec["head"], "parsed")
            continue
        h = lambda k: bytes.fromhex(rec[k])
        if h("method") != req.method:
            differ("method", h("method"), req.method)
        if h("target") != req.target:
            differ("target", h("target"), req.target)
        if rec["version"].encode() != req.http_version:
            differ("version", rec["version"], req.http_version)
        ours = [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in rec["headers"]]
        theirs = list(req.headers.raw_items())
        # h11 lowercases Transfer-Encoding values (coding names are case-insensitive)
        ours = [(n, v.lower() if n.lower() == b"transfer-encoding" else v) for n, v in ours]
        if ours != theirs:
            differ("headers", ours, theirs)
        if h("body") != body:
            differ("body (%d bytes ours, %d h11)" % (len(h("body")), len(body)), h("body")[:60], body[:60])
        if rec["after"] != len(after):
            differ("bytes after the message", rec["after"], len(after))
        # path and query, for the origin form, as urllib splits them
        if rec["form"] == 0:
            target = req.target.decode("ascii")
            path, sep, query = target.partition("?")
            if h("path") != path.encode():
                differ("path", h("path"), path)
            want_query = query.encode() if sep else None
            got_query = bytes.fromhex(rec["query"]) if rec["query"] is not None else None
            if got_query != want_query:
                differ("query", got_query, want_query)
            decoded = urllib.parse.unquote_to_bytes(path)
            got = bytes.fromhex(rec["decoded_path"]) if rec["decoded_path"] is not None else None
            want = None if b"\0" in decoded else decoded
            if got != want:
                differ("percent-decoded path", got, want)
    for p in problems[:20]:
        print(p)
    print("h11 agreement: %d requests, %d disagreements (h11 %s)" % (count, len(problems), h11.__version__))
    return 1 if problems or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
