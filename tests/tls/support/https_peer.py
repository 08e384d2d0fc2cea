"""A small HTTPS server for the ssl.https tests: GET answers 'secure hello', POST echoes
the body. Usage: https_peer.py CERT KEY PORTFILE LIFETIME (it writes its port to PORTFILE and
stops by itself after LIFETIME seconds)."""
import http.server
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer(b"secure hello\n")

    def do_POST(self):
        self.answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


cert, key, portfile, lifetime = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
threading.Timer(lifetime, server.shutdown).start()
server.serve_forever()
