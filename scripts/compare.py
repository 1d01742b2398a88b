#!/usr/bin/env python3
"""`make compare`: Vitals side by side with Prometheus + blackbox exporter + Alertmanager.

    compare.py --kills N [--quick] [--seed S] [--group-wait-ms MS]
                                               (scripts/compare.sh finds the binaries)

Both systems watch the same simulators. Each trial kill -9s one at a random phase and times,
from the kill, three arrivals:
  prometheus  Alertmanager's webhook (blackbox probe every 1 s, rule `for: 2s`) at the receiver
  vitals      the Vitals notifier's webhook (same receiver, Alertmanager's JSON)
  vitals_nats health.status.<service> DOWN on NATS (what the gateway relays to the dashboard)
then restarts the simulator and waits until all three say it recovered. It prints the
distributions and the ratios, writes the raw trials to target/compare/results.json and (full
mode) the figures and settings into docs/BENCHMARKS.md between the compare markers.

--quick (N=2) asserts every kill reaches all three and every restart resolves all three; it
asserts nothing about timing. Standard library only. Every process it starts is stopped at
the end, on errors and on ctrl-c; logs are in target/compare/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from string import Template

from compare_report import (SYSTEMS, RegionMissing, ratios, short_version, summarize,
                            table, why, write_doc)
from compare_watch import Events, NatsWatch, receiver

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "config" / "compare"
OUT = ROOT / "target" / "compare"
DOC = ROOT / "docs" / "BENCHMARKS.md"
# The stacks' simulated services, each with its own NATS user (nats.conf, scripts/stack.sh).
SERVICES = ("auth", "billing", "notifications", "analytics")
DETECT_TIMEOUT_S = 30.0
RECOVER_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0


class Failure(Exception):
    """Something the run cannot go on without; the message says what."""


def free_port() -> int:
    # Asked of the OS so a running native stack (4222, 8080, ...) or a second run never clashes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_until(what: str, pred, timeout: float = START_TIMEOUT_S, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(every)
    raise Failure(f"{what}: not within {timeout:.0f} s")


# ------------------------------------------------------------------ processes

class Procs:
    """Everything this run starts, by name; stop_all() ends each (TERM, then KILL)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.live: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        full = {k: v for k, v in os.environ.items() if k not in ("NATS_USER", "NATS_PASSWORD")}
        full.setdefault("RUST_LOG", "info")
        full.update(env or {})
        log = open(self.logs / f"{name}.log", "ab")
        log.write(f"---- {' '.join(argv)}\n".encode())
        log.flush()
        self.live[name] = subprocess.Popen(argv, env=full, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, cwd=ROOT)
        log.close()

    def check(self, name: str) -> None:
        p = self.live[name]
        if p.poll() is not None:
            tail = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
            raise Failure(f"{name} exited with {p.returncode}; last lines:\n  " + "\n  ".join(tail))

    def kill9(self, name: str) -> float:
        """SIGKILL; the moment after the signal was sent (monotonic)."""
        p = self.live.pop(name)
        os.kill(p.pid, signal.SIGKILL)
        t = time.monotonic()
        p.wait()
        return t

    def stop_all(self) -> None:
        for p in self.live.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in self.live.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.live.clear()


def version(binary: str) -> str:
    r = subprocess.run([binary, "--version"], capture_output=True, text=True)
    first = (r.stdout + r.stderr).strip().splitlines()
    return first[0] if first else "?"


# ------------------------------------------------------------------ the run

class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="vitals-compare-"))
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        for old in (OUT / "logs").glob("*.log"):
            old.unlink()
        self.procs = Procs(OUT / "logs")
        self.events = Events()
        self.ports = {k: free_port() for k in
                      ("nats", "nats_http", "monitor", "notifier", "prometheus", "blackbox",
                       "alertmanager")}
        self.sim_port = {s: free_port() for s in SERVICES}
        self.sim_url = {s: f"http://127.0.0.1:{p}/health" for s, p in self.sim_port.items()}
        self.instances = {u: s for s, u in self.sim_url.items()}
        self.hook = receiver(self.events, self.instances)
        self.nats: NatsWatch | None = None

    def close(self) -> None:
        self.procs.stop_all()
        if self.nats:
            self.nats.close()
        self.hook.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- configuration files, from the templates in config/compare/

    def write_configs(self) -> None:
        fill = {
            "alertmanager_port": self.ports["alertmanager"],
            "blackbox_port": self.ports["blackbox"],
            "receiver_port": self.hook.server_address[1],
            "sim_targets": json.dumps([self.sim_url[s] for s in SERVICES]),
        }
        for name in ("prometheus.yml", "alertmanager.yml"):
            (self.tmp / name).write_text(Template((CONF / name).read_text()).substitute(fill))
        shutil.copy(CONF / "rules.yml", self.tmp / "rules.yml")
        # The notifier: one webhook receiver, the route with every default unless
        # --group-wait-ms says otherwise.
        gw = self.args.group_wait_ms
        (self.tmp / "notifier.toml").write_text(
            "[[receiver]]\nname = \"compare\"\nkind = \"webhook\"\n"
            f"url = \"http://127.0.0.1:{self.hook.server_address[1]}/vitals\"\n\n"
            "[[route]]\nreceivers = [\"compare\"]\n"
            + ("" if gw is None else f"group_wait_ms = {gw}\n"))

    # -- starting

    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports['nats']}"

    def login(self, user: str, default_password: str, env_name: str) -> dict[str, str]:
        # The stacks' development passwords, overridable by the same variables as stack.sh.
        return {"NATS_USER": user, "NATS_PASSWORD": os.environ.get(env_name, default_password),
                "NATS_URL": self.nats_url()}

    def start_sim(self, s: str) -> None:
        # No --instance: each start is a new instance (<service>-<random hex>), like a restart.
        self.procs.start(s, [str(self.args.bin_dir / "simulator"), "--service", s,
                             "--http-addr", f"127.0.0.1:{self.sim_port[s]}"],
                         self.login(f"sim-{s}", f"sim-{s}-dev", f"VITALS_SIM_{s.upper()}_PASSWORD"))

    def start_all(self) -> None:
        a, p, tmp = self.args, self.ports, self.tmp
        nats_conf = os.environ.get("VITALS_NATS_CONF", str(ROOT / "nats.conf"))
        self.procs.start("nats", [a.nats_server, "-c", nats_conf, "-a", "127.0.0.1",
                                  "-p", str(p["nats"]), "-m", str(p["nats_http"]),
                                  "-sd", str(tmp / "jetstream")])
        self.await_http("nats", f"http://127.0.0.1:{p['nats_http']}/healthz")
        self.nats = NatsWatch(p["nats"], self.events)
        self.nats.start()
        if not self.nats.ready.wait(10):
            raise Failure("the NATS watcher's subscriptions were not confirmed")
        self.procs.start("monitor", [str(a.bin_dir / "monitor"),
                                     "--http-addr", f"127.0.0.1:{p['monitor']}"],
                         self.login("monitor", "monitor-dev", "VITALS_MONITOR_PASSWORD"))
        self.await_http("monitor", f"http://127.0.0.1:{p['monitor']}/healthz")
        self.procs.start("notifier", [str(a.bin_dir / "notifier"),
                                      "--http-addr", f"127.0.0.1:{p['notifier']}",
                                      "--config", str(tmp / "notifier.toml")],
                         self.login("notifier", "notifier-dev", "VITALS_NOTIFIER_PASSWORD"))
        self.await_http("notifier", f"http://127.0.0.1:{p['notifier']}/healthz")
        for s in SERVICES:
            self.start_sim(s)
        for s in SERVICES:
            self.await_http(s, self.sim_url[s])
        self.procs.start("blackbox", [a.blackbox, f"--config.file={CONF / 'blackbox.yml'}",
                                      f"--web.listen-address=127.0.0.1:{p['blackbox']}"])
        self.await_http("blackbox", f"http://127.0.0.1:{p['blackbox']}/-/healthy")
        self.procs.start("alertmanager", [
            a.alertmanager, f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{p['alertmanager']}",
            # One instance: no cluster, so no peer wait before a notification.
            "--cluster.listen-address="])
        self.await_http("alertmanager", f"http://127.0.0.1:{p['alertmanager']}/-/ready")
        self.procs.start("prometheus", [
            a.prometheus, f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{p['prometheus']}"])
        self.await_http("prometheus", f"http://127.0.0.1:{p['prometheus']}/-/ready")

    def await_http(self, name: str, url: str) -> None:
        def up() -> bool:
            self.procs.check(name)
            return http_get(url)[0] == 200
        wait_until(f"{name} healthy at {url}", up)

    # -- what each system says now

    def prom_query(self, q: str) -> list:
        url = (f"http://127.0.0.1:{self.ports['prometheus']}/api/v1/query?"
               + urllib.parse.urlencode({"query": q}))
        code, body = http_get(url)
        if code != 200:
            return []
        try:
            return json.loads(body)["data"]["result"]
        except (ValueError, KeyError):
            return []

    def prom_all_up(self) -> bool:
        res = self.prom_query('probe_success{job="sims"}')
        return (len(res) == len(SERVICES) and all(r["value"][1] == "1" for r in res)
                and not self.prom_query("ALERTS"))

    def vitals_all_up(self) -> bool:
        code, body = http_get(f"http://127.0.0.1:{self.ports['monitor']}/api/status")
        if code != 200 or self.nats is None or self.nats.heartbeat.get("in_grace", True):
            return False
        try:
            states = {s["service"]: s["status"] for s in json.loads(body)["services"]}
        except (ValueError, KeyError, TypeError):
            return False
        return all(states.get(s) == "HEALTHY" for s in SERVICES)

    def notifier_reading(self) -> bool:
        return b"notifier running" in (OUT / "logs" / "notifier.log").read_bytes()

    def warm_up(self) -> None:
        wait_until("the notifier reading HEALTH_EVENTS", self.notifier_reading)
        wait_until("Prometheus: every probe up, no alert", self.prom_all_up)
        wait_until("Vitals: every simulator HEALTHY, the monitor out of its grace",
                   self.vitals_all_up)

    # -- trials

    def trial(self, i: int) -> dict:
        s = self.rng.choice(SERVICES)
        # A random phase against the 1 s probes, samples and rule evaluations.
        time.sleep(self.rng.uniform(0.0, 1.0))
        wall = time.time()
        t_kill = self.procs.kill9(s)
        got = self.events.wait_all(SYSTEMS, s, "firing", t_kill, DETECT_TIMEOUT_S)
        detect = {k: (None if v is None else round(v[0] - t_kill, 4)) for k, v in got.items()}
        why = got["vitals_nats"][1] if got["vitals_nats"] else None
        self.start_sim(s)
        t_restart = time.monotonic()
        self.await_http(s, self.sim_url[s])
        back = self.events.wait_all(SYSTEMS, s, "resolved", t_restart, RECOVER_TIMEOUT_S)
        recover = {k: (None if v is None else round(v[0] - t_restart, 4))
                   for k, v in back.items()}
        line = "  ".join(f"{k} {'MISSED' if v is None else f'{v:.3f}s'}" for k, v in detect.items())
        print(f"trial {i + 1:>3}/{self.args.kills}  {s:<13} {line}", flush=True)
        # Both sides idle again before the next kill (Prometheus and the monitor both see
        # it up: the resolves above), plus a second for the probes to settle.
        time.sleep(1.0)
        return {"trial": i + 1, "service": s, "killed_at": wall, "detect_s": detect,
                "vitals_down_reasons": why, "resolve_after_restart_s": recover}


def yaml_value(name: str, key: str) -> str:
    """`key: value` from one of config/compare's files (flat enough for a regex), so the doc
    says what actually ran."""
    m = re.search(rf"^\s*-?\s*{re.escape(key)}:\s*(.+?)\s*(#.*)?$",
                  (CONF / name).read_text(), re.M)
    return m.group(1) if m else "?"


def flag_default(binary: Path, flag: str) -> str:
    """The `[default: X]` clap prints for `--flag` in `binary --help`."""
    text = subprocess.run([str(binary), "--help"], capture_output=True, text=True).stdout
    for block in re.split(r"\n(?=\s+-)", text):  # one block per option
        if block.lstrip().startswith(f"--{flag} "):
            m = re.search(r"\[default: ([^\]]+)\]", block)
            return m.group(1) if m else "?"
    return "?"


def settings(run: Run) -> dict:
    a = run.args
    src = (ROOT / "services" / "notifier" / "src" / "config.rs").read_text()
    m = re.search(r"fn d_group_wait\(\) -> u64 \{\s*([\d_]+)", src)
    group_wait = (f"route defaults (group_wait_ms {m.group(1).replace('_', '') if m else '?'})"
                  if a.group_wait_ms is None
                  else f"route group_wait_ms {a.group_wait_ms} (--group-wait-ms; not the default)")
    hb = run.nats.heartbeat if run.nats else {}
    p, r, am = "prometheus.yml", "rules.yml", "alertmanager.yml"
    return {
        "prometheus": short_version(version(a.prometheus)),
        "blackbox": short_version(version(a.blackbox)),
        "alertmanager": short_version(version(a.alertmanager)),
        "nats_server": short_version(version(a.nats_server)),
        "prometheus_cfg": (f"scrape_interval {yaml_value(p, 'scrape_interval')}, scrape_timeout "
                           f"{yaml_value(p, 'scrape_timeout')}, evaluation_interval "
                           f"{yaml_value(p, 'evaluation_interval')}; blackbox http_2xx GET of "
                           f"each simulator's /health; rule `{yaml_value(r, 'expr')}` "
                           f"`for: {yaml_value(r, 'for')}`"),
        "alertmanager_cfg": (f"group_by {yaml_value(am, 'group_by')} (each alert its own "
                             f"group), group_wait {yaml_value(am, 'group_wait')}, "
                             f"group_interval {yaml_value(am, 'group_interval')} (only the "
                             "resolve waits for it), repeat_interval "
                             f"{yaml_value(am, 'repeat_interval')}, no cluster (no peer "
                             "wait), webhook with send_resolved"),
        "vitals_cfg": ("the repo's nats.conf; monitor defaults (heartbeat timeout "
                       f"{hb.get('heartbeat_timeout_ms', '?')} ms, judged every "
                       f"{flag_default(a.bin_dir / 'monitor', 'tick-ms')} ms, reconnect "
                       f"grace {flag_default(a.bin_dir / 'monitor', 'reconnect-grace-ms')} ms); "
                       f"notifier: one webhook receiver, {group_wait}"),
        "simulators": f"{len(SERVICES)} ({', '.join(SERVICES)}), 1 sample/s each",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 kills, assert every alert arrives")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--group-wait-ms", type=int, default=None,
                    help="the notifier route's group_wait_ms [default: the notifier's own]")
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release")
    for b in ("nats-server", "prometheus", "blackbox", "alertmanager"):
        ap.add_argument(f"--{b}", required=True, dest=b.replace("-", "_"))
    ap.add_argument("--command", default=None, help="how it was run, for the doc")
    args = ap.parse_args()
    if args.quick:
        args.kills = 2
    if args.kills < 1:
        ap.error("--kills must be at least 1")
    if not args.quick and args.bin_dir.name != "release":
        ap.error(f"figures come from release binaries, not {args.bin_dir} (--quick may use any)")
    if args.seed is None:
        args.seed = random.randrange(2**32)

    # ctrl-c raises KeyboardInterrupt; TERM and HUP do the same, so `finally` stops everything.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    started = time.time()
    load0 = os.getloadavg()[0]
    run = Run(args)
    trials: list[dict] = []
    try:
        run.write_configs()
        run.start_all()
        run.warm_up()
        print(f"all up in {time.time() - started:.1f} s (seed {args.seed}); "
              f"{args.kills} kills", flush=True)
        for i in range(args.kills):
            trials.append(run.trial(i))
        st = settings(run)
    except (Failure, OSError) as e:
        print(f"compare: {e}\n(logs: {OUT / 'logs'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("compare: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        run.close()

    summary = summarize(trials)
    load1 = os.getloadavg()[0]
    when = datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = args.command or " ".join(["scripts/compare.py", *sys.argv[1:]])
    print()
    print(table(summary, markdown=False))
    print(ratios(summary))
    print(why(summary).replace("`", ""))
    result = {"date": when, "command": command, "seed": args.seed, "quick": args.quick,
              "load_average": [load0, load1], "settings": st, "summary": summary,
              "trials": trials}
    out = OUT / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw trials: {out.relative_to(ROOT)}")

    missed = [(t["trial"], sy, what) for t in trials
              for what in ("detect_s", "resolve_after_restart_s")
              for sy in SYSTEMS if t[what][sy] is None]
    if args.quick:
        for n, sy, what in missed:
            print(f"FAIL: trial {n}: {sy} {'alert' if what == 'detect_s' else 'resolve'} "
                  "did not arrive", file=sys.stderr)
        if missed:
            return 1
        print(f"ok: {len(trials)} kills, every alert and resolve arrived from all three")
        return 0
    try:
        write_doc(DOC, summary, st, when, (load0, load1), command, args.kills)
    except RegionMissing as e:
        print(f"compare: {e}", file=sys.stderr)
        return 1
    print(f"figures written to {DOC.relative_to(ROOT)} (compare region)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
