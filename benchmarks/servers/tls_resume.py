#!/usr/bin/env python3
"""Resumed TLS 1.3 handshakes against HOST:PORT for SECONDS, one connection at a time,
for scripts/bench's tls part (issue 12).

    tls_resume.py HOST PORT SECONDS

openssl s_time -reuse cannot resume TLS 1.3: it never reads after the handshake, so it
never gets the session tickets a TLS 1.3 server sends then. Here every connection
resumes the session of the one before (the first one is a full handshake, not counted),
sends one "GET / HTTP/1.1" request and reads the "Hello, World!" reply, which
reads the tickets that came before it; then it closes. Prints
"RESULT connections=N resumed=R seconds=S". The certificate is not verified (the
bench's own, made at bench time).
"""
import socket, ssl, sys, time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def one(session):
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as conn:
            conn.sendall(REQUEST)
            reply = b""
            # gsockd's reply has a Content-Length, nginx + lua's is chunked
            while not (reply.endswith(b"Hello, World!") or reply.endswith(b"Hello, World!\r\n0\r\n\r\n")):
                data = conn.recv(4096)
                if not data:
                    raise ConnectionError("closed before the reply: %r" % reply)
                reply += data
            return conn.session, conn.session_reused


session, _ = one(None)
n = resumed = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    session, reused = one(session)
    n += 1
    resumed += reused
print("RESULT connections=%d resumed=%d seconds=%.3f" % (n, resumed, time.monotonic() - start))
