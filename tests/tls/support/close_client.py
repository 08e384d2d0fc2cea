"""How a gsockd TLS service ends a connection, seen from a python3 ssl client (TLS 1.3).

    close_client.py PORT notify   sends "hi", reads the one-line answer, then reads on:
                                  prints the answer and "close_notify" when the server's
                                  close came with a close_notify, "ragged" when it did not
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
end = "data after the answer: %r" % rest if rest else None
try:
    while end is None:
        chunk = conn.recv(4096)
        if not chunk:
            end = "close_notify"
        else:
            end = "data after the answer: %r" % chunk
except ssl.SSLEOFError:
    end = "ragged"
print(answer.decode(), end)
