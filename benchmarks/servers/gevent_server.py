"""gevent_server.py: the gevent baseline of the server benchmarks (issue 6).

A gevent.server.StreamServer (Debian's python3-gevent) doing the two jobs of
libev_server.c in one process:
  echo: every byte received is sent back (recv + sendall);
  http: requests are delimited by b"\\r\\n\\r\\n" (no bodies), each complete one gets
        the same 13-byte "Hello, World!" reply as http.lua, keep-alive.

    python3 gevent_server.py echo|http [HOST:]PORT

Prints "listening on HOST:PORT"; SIGTERM/SIGINT exit.
"""
import signal
import sys

from gevent.server import StreamServer
import gevent

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"


def echo(sock, _address):
    recv, sendall = sock.recv, sock.sendall
    try:
        while True:
            data = recv(65536)
            if not data:
                return
            sendall(data)
    except OSError:
        return


def http(sock, _address):
    recv, sendall = sock.recv, sock.sendall
    pending = b""
    try:
        while True:
            data = recv(65536)
            if not data:
                return
            pending += data
            n = pending.count(b"\r\n\r\n")
            if n:
                sendall(RESPONSE * n)
                pending = pending[pending.rindex(b"\r\n\r\n") + 4:]
            elif len(pending) > 1 << 20:
                return
    except OSError:
        return


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("echo", "http"):
        sys.stderr.write("usage: gevent_server.py echo|http [HOST:]PORT\n")
        sys.exit(2)
    host, _, port = sys.argv[2].rpartition(":")
    host = host or "127.0.0.1"
    server = StreamServer((host, int(port)), echo if sys.argv[1] == "echo" else http, backlog=511)
    server.start()
    print("listening on %s:%s" % (host, port), flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop, 0)
    gevent.signal_handler(signal.SIGINT, server.stop, 0)
    server.serve_forever()


if __name__ == "__main__":
    main()
