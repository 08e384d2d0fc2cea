"""How a gsockd TLS service ends a connection, seen from a python3 ssl client (TLS 1.3).
The service answers the line "hi" with one line, then reads on until the client's end.

    close_client.py PORT notify   sends "hi", reads the answer, then ends with a close_notify
                                  and waits for the server's (unwrap): prints the answer and
                                  "close_notify" when it came, "ragged" when the connection
                                  ended without one
    close_client.py PORT ragged   sends "hi", reads the answer, then shuts down its side of the
                                  TCP connection without a close_notify and reads on: prints the
                                  answer and "close_notify" or "ragged", as the server's end came
    close_client.py PORT reset    handshakes, then resets the connection at once (SO_LINGER
                                  0), before the server's session tickets; prints "reset"
"""
import socket
import ssl
import struct
import sys

port, mode = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
conn = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
if mode == "reset":
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    print("reset")
    sys.exit(0)
conn.sendall(b"hi\n")
data = b""
while b"\n" not in data:
    chunk = conn.recv(4096)
    if not chunk:
        sys.exit("closed before the answer: %r" % data)
    data += chunk
answer, rest = data.split(b"\n", 1)
if rest:
    sys.exit("data after the answer: %r" % rest)
try:
    if mode == "notify":
        conn.unwrap()
        end = "close_notify"
    else:
        socket.socket.shutdown(conn, socket.SHUT_WR)  # the TCP socket's, under the TLS layer
        chunk = conn.recv(4096)
        end = "close_notify" if not chunk else "data after the answer: %r" % chunk
except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError) as e:
    end = "ragged" if isinstance(e, ssl.SSLEOFError) else "%s: %s" % (type(e).__name__, e)
print(answer.decode(), end)
