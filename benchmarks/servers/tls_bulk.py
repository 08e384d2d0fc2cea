#!/usr/bin/env python3
"""One bulk download over TLS from HOST:PORT, for scripts/bench's tls part (issue 12).

    tls_bulk.py HOST PORT BYTES

Sends "GET /bulk.bin HTTP/1.0" and reads the reply to its end (the server closes),
256 KiB at a time; checks that the body (after the head) is BYTES long. Prints
"RESULT bytes=N seconds=S version=V cipher=C". The certificate is not verified (the
bench's own, made at bench time).
"""
import socket, ssl, sys, time

host, port, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
buf = bytearray(256 * 1024)
view = memoryview(buf)
with socket.create_connection((host, port), timeout=30) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        start = time.monotonic()
        conn.sendall(b"GET /bulk.bin HTTP/1.0\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            n = conn.recv_into(buf)
            if n == 0:
                raise ConnectionError("closed before the reply's head: %r" % head)
            head += bytes(view[:n])
        body = len(head) - head.index(b"\r\n\r\n") - 4
        while True:
            try:
                n = conn.recv_into(buf)
            except ssl.SSLEOFError:   # closed without close_notify
                break
            if n == 0:
                break
            body += n
        seconds = time.monotonic() - start
        version, cipher = conn.version(), conn.cipher()[0]
if body != want:
    sys.exit("got %d bytes of body, not %d" % (body, want))
print("RESULT bytes=%d seconds=%.3f version=%s cipher=%s" % (body, seconds, version, cipher))
