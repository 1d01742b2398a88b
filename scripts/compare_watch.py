"""What arrives, when, for `make compare` (scripts/compare.py): the webhook receiver both
systems post to, and a NATS subscriber for Vitals' own verdicts. Standard library only."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Events:
    """Every arrival (monotonic time, system, service, 'firing' | 'resolved', detail),
    waitable. The detail is what the system said why (Vitals' DOWN reasons)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._items: list[tuple[float, str, str, str, str]] = []

    def add(self, t: float, system: str, service: str, state: str, detail: str = "") -> None:
        with self._cv:
            self._items.append((t, system, service, state, detail))
            self._cv.notify_all()

    def first(self, system: str, service: str, state: str,
              since: float) -> tuple[float, str] | None:
        for t, sy, sv, st, detail in self._items:
            if t >= since and (sy, sv, st) == (system, service, state):
                return t, detail
        return None

    def wait_all(self, systems, service: str, state: str, since: float, timeout: float) -> dict:
        """(time, detail) of each system's first arrival at or after `since`; None for any
        not in time."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = {s: self.first(s, service, state, since) for s in systems}
                left = deadline - time.monotonic()
                if all(v is not None for v in got.values()) or left <= 0:
                    return got
                self._cv.wait(left)


def receiver(events: Events, instances: dict[str, str]) -> ThreadingHTTPServer:
    """The one webhook receiver both systems post to: /alertmanager and /vitals."""

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            t = time.monotonic()  # arrival, before the body is read or parsed
            path = self.path.split("?")[0]
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                alerts = body["alerts"]
            except (ValueError, KeyError, TypeError):
                self.send_error(400)
                return
            for a in alerts:
                labels = a.get("labels", {})
                status = a.get("status")
                if path == "/alertmanager" and labels.get("alertname") == "ProbeDown":
                    # The blackbox pattern's instance label is the probed URL.
                    service = instances.get(labels.get("instance", ""))
                    system = "prometheus"
                elif path == "/vitals" and labels.get("alertname") == "SERVICE_DOWN":
                    service, system = labels.get("service"), "vitals"
                else:
                    continue
                if service and status in ("firing", "resolved"):
                    events.add(t, system, service, status)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="receiver", daemon=True).start()
    return srv


class NatsWatch(threading.Thread):
    """health.status.* (DOWN and back) and the monitor's heartbeat, over a bare NATS socket
    as the read-only viewer (no credentials: nats.conf's no_auth_user)."""

    def __init__(self, port: int, events: Events) -> None:
        super().__init__(name="nats-watch", daemon=True)
        self.events = events
        self.heartbeat: dict = {}
        self.ready = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.settimeout(None)
        self.f = self.sock.makefile("rb")
        info = self.f.readline()
        if not info.startswith(b"INFO "):
            raise ConnectionError(f"not a NATS server on {port}: {info[:80]!r}")
        connect = {"verbose": False, "pedantic": False, "name": "vitals-compare", "lang": "python",
                   "version": "0", "protocol": 1, "headers": True}
        self.sock.sendall(f"CONNECT {json.dumps(connect)}\r\nSUB health.status.* 1\r\n"
                          "SUB health.monitor.heartbeat 2\r\nPING\r\n".encode())

    def run(self) -> None:
        while True:
            line = self.f.readline()
            if not line:
                return
            line = line.rstrip(b"\r\n")
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line == b"PONG":
                self.ready.set()  # both subscriptions are in place
            elif line.startswith(b"-ERR"):
                print(f"nats: {line.decode(errors='replace')}", file=sys.stderr, flush=True)
            elif line.startswith((b"MSG ", b"HMSG ")):
                t = time.monotonic()
                parts = line.split()
                size = int(parts[-1])
                hdr = int(parts[-2]) if parts[0] == b"HMSG" else 0
                self.on_msg(t, parts[1].decode(), self.f.read(size + 2)[hdr:size])

    def on_msg(self, t: float, subject: str, body: bytes) -> None:
        try:
            msg = json.loads(body)
        except ValueError:
            return
        if subject == "health.monitor.heartbeat":
            self.heartbeat = msg
        elif msg.get("status") == "DOWN":
            reasons = msg.get("reasons") or []
            self.events.add(t, "vitals_nats", msg.get("service", ""), "firing",
                            "; ".join(str(r) for r in reasons))
        elif msg.get("previous") == "DOWN":
            self.events.add(t, "vitals_nats", msg.get("service", ""), "resolved")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
