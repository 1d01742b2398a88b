#!/usr/bin/env python3
"""A tiny NATS subscriber for the stack test (standard library only, no `nats` CLI needed).

    nats_tail.py URL SUBJECT [--user U --password P] [--ready FILE]

Logs in (no credentials: the server's no_auth_user, i.e. the read-only viewer), subscribes
to SUBJECT and prints one line per message, `SUBJECT PAYLOAD`, flushed at once. Once the
server has confirmed the subscription (a PING answered after the SUB) it touches FILE, so a
caller knows nothing sent afterwards can be missed. Server errors (`-ERR ...`, e.g. a
permissions violation) go to stderr. Runs until killed or the connection closes.
"""

import argparse
import json
import socket
import sys
from urllib.parse import urlparse


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("subject")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--ready")
    args = ap.parse_args()

    u = urlparse(args.url)
    sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=10)
    sock.settimeout(None)
    f = sock.makefile("rb")
    info = f.readline()
    if not info.startswith(b"INFO "):
        print(f"not a NATS server: {info[:80]!r}", file=sys.stderr)
        return 1
    connect = {"verbose": False, "pedantic": False, "name": "nats_tail", "lang": "python",
               "version": "0", "protocol": 1, "headers": True}
    if args.user:
        connect.update(user=args.user, **{"pass": args.password or ""})
    sock.sendall(f"CONNECT {json.dumps(connect)}\r\nSUB {args.subject} 1\r\nPING\r\n".encode())

    out = sys.stdout
    while True:
        line = f.readline()
        if not line:
            return 0
        line = line.rstrip(b"\r\n")
        if line == b"PING":
            sock.sendall(b"PONG\r\n")
        elif line == b"PONG":
            if args.ready:
                open(args.ready, "w").close()
        elif line.startswith(b"-ERR"):
            print(line.decode(errors="replace"), file=sys.stderr, flush=True)
        elif line.startswith(b"MSG ") or line.startswith(b"HMSG "):
            parts = line.split()
            size = int(parts[-1])
            hdr = int(parts[-2]) if parts[0] == b"HMSG" else 0
            body = f.read(size + 2)[hdr:size]
            out.write(f"{parts[1].decode()} {body.decode(errors='replace')}\n")
            out.flush()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
