"""A python3 ssl client for the HTTPS wait tests (tests/http/wait_ends_test.lua): it
handshakes (TLS 1.3, no verification), sends DATA (backslash escapes as in Python
literals: \\r\\n), then, by MODE:

    reset SECONDS   waits SECONDS, then resets the connection (SO_LINGER 0) without a
                    close_notify; prints "reset"
    read SECONDS    reads until the server closes or SECONDS pass; prints what came

usage: tls_http_client.py PORT MODE DATA SECONDS"""
import socket
import ssl
import struct
import sys
import time

port, mode, data, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
data = data.encode("latin-1").decode("unicode_escape").encode("latin-1")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
conn = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=True)
conn.sendall(data)
if mode == "reset":
    time.sleep(seconds)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # python's ssl sends no close_notify: the peer sees the reset
    print("reset")
else:
    conn.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except Exception as e:
        got += ("\n<%s>" % type(e).__name__).encode()
    sys.stdout.write(got.decode("latin-1"))
