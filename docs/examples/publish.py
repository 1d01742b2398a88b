"""Publish a program's own health to Vitals: one MetricSample a second on
metrics.<service>, and a last one with "stopping": true when told to stop.

    pip install nats-py
    SERVICE=my-app NATS_URL=nats://127.0.0.1:4222 python3 publish.py

Environment: SERVICE, NATS_URL (a comma-separated list is fine), NATS_USER and
NATS_PASSWORD (the stack's nats.conf needs a user that may publish metrics.>),
HEALTH_URL (where a browser reaches this program's /health).
"""

import asyncio
import json
import os
import secrets
import signal
import time

import nats

SERVICE = os.environ.get("SERVICE", "my-app")  # ^[a-z0-9][a-z0-9_-]{0,62}$
HEALTH_URL = os.environ.get("HEALTH_URL", "http://127.0.0.1:8000/health")


async def main() -> None:
    # A new instance id per start, so seq starts again at 1 without being
    # refused as a duplicate of the previous run's.
    instance = f"{SERVICE}-{secrets.token_hex(3)}"
    # Named vitals:<source>:<service>:<instance>, so the monitor sees a crash
    # the moment the connection closes instead of after the heartbeat timeout.
    nc = await nats.connect(
        servers=os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(","),
        user=os.environ.get("NATS_USER"),
        password=os.environ.get("NATS_PASSWORD"),
        name=f"vitals:app:{SERVICE}:{instance}",
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)

    seq = 0
    cpu_before, wall_before = time.process_time(), time.monotonic()
    while True:
        stopping = stop.is_set()
        # This process's own CPU share since the last sample; report your real figures.
        cpu_now, wall_now = time.process_time(), time.monotonic()
        cpu_pct = 100.0 * (cpu_now - cpu_before) / max(wall_now - wall_before, 1e-3)
        cpu_before, wall_before = cpu_now, wall_now
        seq += 1
        sample = {
            "service": SERVICE,
            "instance": instance,
            "seq": seq,  # +1 per sample, per instance
            "ts_ms": int(time.time() * 1000),
            "cpu_pct": round(min(cpu_pct, 100.0), 1),  # optional, 0-100
            "latency_ms": 12.5,  # e.g. your median request time, >= 0
            "error_rate": 0.0,  # failed / all requests, 0-1
            "health_url": HEALTH_URL,
        }
        if stopping:
            sample["stopping"] = True  # DOWN at once, reason "stopped"
        await nc.publish(f"metrics.{SERVICE}", json.dumps(sample).encode())
        if stopping:
            break
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass
    await nc.drain()  # sends what is buffered (the stopping sample) before exit


if __name__ == "__main__":
    asyncio.run(main())
