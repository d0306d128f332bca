#!/usr/bin/env python3
"""A stand-in for the app: answers 503 while STATE/maintenance exists, 200 otherwise."""
import http.server
import os
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
state = sys.argv[2] if len(sys.argv) > 2 else "state"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        down = os.path.exists(os.path.join(state, "maintenance"))
        body = b"maintenance\n" if down else b"ok\n"
        self.send_response(503 if down else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
