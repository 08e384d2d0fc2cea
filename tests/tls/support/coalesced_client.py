"""A TLS 1.3 client whose Finished and first line leave in one send (one TCP segment on
127.0.0.1), so that a server reading ahead gets the line with the end of the handshake.
Prints the server's one-line answer.  usage: coalesced_client.py PORT LINE"""
import socket
import ssl
import sys

port, line = int(sys.argv[1]), sys.argv[2].encode() + b"\n"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(10)


def pull():
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("closed by the server")
    incoming.write(chunk)


while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        data = outgoing.read()
        if data:
            s.sendall(data)
        pull()
tls.write(line)
s.sendall(outgoing.read())  # the Finished and the line together
answer = b""
while b"\n" not in answer:
    try:
        data = tls.read(4096)
    except ssl.SSLWantReadError:
        pull()
        continue
    if not data:
        break
    answer += data
print(answer.decode().strip())
