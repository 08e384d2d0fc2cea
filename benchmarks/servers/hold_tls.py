#!/usr/bin/env python3
"""Holds COUNT idle TLS connections to HOST:PORT, for scripts/bench's tls part (issue 12).

    hold_tls.py HOST PORT COUNT MAX_SECONDS

Connects and finishes the TLS handshake of one connection after the other (so the
server's accept queue never overflows), without verifying the certificate (the bench's
own, made at bench time), reads what the server sent after the handshake (TLS 1.3
session tickets) so nothing is left unread on either side, then prints
"READY held=N seconds=S" and holds them all idle until SIGTERM or MAX_SECONDS. A
connection that fails ends the run with its error on stderr.
"""
import resource, signal, socket, ssl, sys, time

host, port, count, max_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = count + 100
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held = []
start = time.monotonic()
deadline = start + max_seconds
try:
    for i in range(count):
        if time.monotonic() > deadline:
            raise TimeoutError("out of time after %d connections" % i)
        raw = socket.create_connection((host, port), timeout=10)
        conn = ctx.wrap_socket(raw, server_hostname="localhost")
        held.append(conn)
    # Read the tickets the server sends after the handshake (TLS 1.3), without blocking.
    for conn in held:
        conn.setblocking(False)
        try:
            while conn.recv(4096):
                pass
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
except Exception as e:  # noqa: BLE001 - any failure is reported the same way
    print("hold_tls: connection %d: %s" % (len(held) + 1, e), file=sys.stderr)
    sys.exit(1)
print("READY held=%d seconds=%.2f" % (len(held), time.monotonic() - start), flush=True)
time.sleep(max(0.0, deadline - time.monotonic()))
