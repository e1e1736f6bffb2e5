"""A webhook receiver for missive's tests: verifies every delivery with the Standard Webhooks
organisation's `standardwebhooks` package and records it. Prints its port, then serves.

  POST /hook      a delivery: verified against the secrets it was given (any may match)
  POST /control   {"fail_next": N, "slow_next": N, "down": bool, "secrets": [...]}
  GET  /records   every delivery so far: id, verified, the status answered, the body

A failing receiver answers 500; a slow one answers after 3 s (past missive's timeout); a
"down" one answers 503 until told otherwise.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
state = {"fail_next": 0, "slow_next": 0, "down": False, "secrets": sys.argv[1:]}
records = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            body = json.dumps(records).encode()
        self.reply(200, body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/control":
            with lock:
                state.update(json.loads(raw))
            return self.reply(200, b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = False
        for secret in state["secrets"]:
            try:
                Webhook(secret).verify(raw, headers)
                verified = True
                break
            except Exception:
                pass
        with lock:
            if state["down"]:
                status, slow = 503, False
            elif state["slow_next"] > 0:
                state["slow_next"] -= 1
                status, slow = 200, True
            elif state["fail_next"] > 0:
                state["fail_next"] -= 1
                status, slow = 500, False
            else:
                status, slow = 200, False
        with lock:
            records.append({
                "id": headers.get("webhook-id"),
                "signatures": headers.get("webhook-signature", "").count("v1,"),
                "verified": verified,
                "status": status,
                "slow": slow,
                "body": json.loads(raw),
            })
        if slow:
            time.sleep(3)
        try:
            self.reply(status, b"{}")
        except (BrokenPipeError, ConnectionResetError):
            pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
