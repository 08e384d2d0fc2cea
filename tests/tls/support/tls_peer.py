#!/usr/bin/env python3
"""A TLS peer for the TLS tests (python3's ssl module, the system's OpenSSL).

    python3 tls_peer.py --port P [--mode echo|stall] [--cert F --key F]
                        [--client-ca F] [--alpn a,b] [--max-version 1.2] [--lifetime S]

Listens on 127.0.0.1:P, prints "READY P" on stdout once listening, and serves each
connection in a thread until --lifetime seconds (default 60) have passed, then exits.

--mode stall: accepts TCP connections and never answers (no handshake, no close)
until the process ends.

--mode trickle: reads the ClientHello, then sends the start of a TLS handshake record
one byte every 0.05 s: a handshake that is always making progress but never ends.

--mode echo (default): TLS server. Reads lines and answers each:
  BURST            sends "one\\ntwo\\nthree\\n" in one TLS record (one SSL_write)
  PART <text>      sends <text> (no newline added) and stays open
  ABRUPT <text>    sends <text> (no newline added), then closes the TCP connection
                   without a close_notify
  NOTIFY <text>    sends <text>, then a close_notify (unwrap), then closes
  RESET            closes with SO_LINGER 0 (the client sees a TCP reset)
  SILENT           reads on but never answers again
  COUNT            stops reading for 1 s, then reads everything up to "\nEND\n" and
                   answers "a=<n> b=<m> order=ok|bad": how many "a" then "b" bytes came
                   (order=ok when they came as a...ab...b and nothing else)
  WHO              answers the client certificate's CN, or "none"
  ALPN             answers the negotiated ALPN protocol, or "none"
  VERSION          answers the TLS version ("TLSv1.3", ...)
  anything else    echoed back as is, with its "\\n"
"""
import argparse
import os
import socket
import ssl
import struct
import sys
import threading
import time


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", default="echo", choices=["echo", "stall", "trickle"])
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--client-ca")
    p.add_argument("--alpn")
    p.add_argument("--max-version")
    p.add_argument("--lifetime", type=float, default=60)
    return p.parse_args()


def context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    if args.max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def peer_cn(conn):
    cert = conn.getpeercert()
    if not cert:
        return "none"
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "none"


def serve_echo(ctx, raw):
    raw.settimeout(30)
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        sys.stderr.write("handshake failed: %s\n" % e)
        raw.close()
        return
    reader = conn.makefile("rb")
    silent = False
    try:
        while True:
            line = reader.readline()
            if not line:
                break
            if silent:
                continue
            word = line.rstrip(b"\r\n")
            if word == b"BURST":
                conn.sendall(b"one\ntwo\nthree\n")
            elif word.startswith(b"PART "):
                conn.sendall(word[5:])
            elif word.startswith(b"ABRUPT"):
                conn.sendall(word[7:])
                # shutdown of the TCP socket under the TLS layer: no close_notify
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
                break
            elif word.startswith(b"NOTIFY"):
                conn.sendall(word[7:])
                try:
                    conn.unwrap().close()
                except (ssl.SSLError, OSError):
                    pass
                return
            elif word == b"RESET":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            elif word == b"COUNT":
                time.sleep(1)
                data = bytearray()
                while not data.endswith(b"\nEND\n"):
                    chunk = reader.read1(1 << 20)
                    if not chunk:
                        break
                    data += chunk
                body = bytes(data[:-5]) if data.endswith(b"\nEND\n") else bytes(data)
                a, b = body.count(b"a"), body.count(b"b")
                ordered = body == b"a" * a + b"b" * b
                conn.sendall(("a=%d b=%d order=%s\n" % (a, b, "ok" if ordered else "bad")).encode())
            elif word == b"SILENT":
                silent = True
            elif word == b"WHO":
                conn.sendall(peer_cn(conn).encode() + b"\n")
            elif word == b"ALPN":
                conn.sendall((conn.selected_alpn_protocol() or "none").encode() + b"\n")
            elif word == b"VERSION":
                conn.sendall((conn.version() or "none").encode() + b"\n")
            else:
                conn.sendall(line)
    except (ssl.SSLError, OSError):
        pass
    finally:
        try:
            reader.close()
        except OSError:
            pass
        try:
            socket.socket.close(conn)
        except OSError:
            pass


def serve_trickle(raw):
    raw.settimeout(30)
    try:
        raw.recv(65536)
        raw.sendall(b"\x16\x03\x03\x40\x00")
        for _ in range(600):
            time.sleep(0.05)
            raw.sendall(b"\x00")
    except OSError:
        pass
    finally:
        raw.close()


def main():
    args = parse()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)
    ctx = context(args) if args.mode == "echo" else None
    deadline = time.monotonic() + args.lifetime
    held = []
    print("READY %d" % args.port, flush=True)
    listener.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            raw, _ = listener.accept()
        except socket.timeout:
            continue
        if args.mode == "stall":
            held.append(raw)
        elif args.mode == "trickle":
            threading.Thread(target=serve_trickle, args=(raw,), daemon=True).start()
        else:
            threading.Thread(target=serve_echo, args=(ctx, raw), daemon=True).start()
    os._exit(0)


if __name__ == "__main__":
    main()
