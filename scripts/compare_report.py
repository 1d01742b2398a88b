"""The figures of `make compare` (scripts/compare.py): distributions, ratios, the printed
table and docs/BENCHMARKS.md's compare region. Pure, standard library only."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

BEGIN, END = "<!-- compare:begin", "<!-- compare:end -->"
SYSTEMS = ("prometheus", "vitals", "vitals_nats")
LABEL = {
    "prometheus": "Prometheus + blackbox + Alertmanager, webhook",
    "vitals": "Vitals, notifier webhook",
    "vitals_nats": "Vitals, `health.status.<service>` DOWN on NATS (the dashboard's feed)",
}


class RegionMissing(Exception):
    """The doc has no compare region to write into."""


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile: over 20 trials p99 is the worst one."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summarize(trials: list[dict]) -> dict:
    out = {}
    for sy in SYSTEMS:
        xs = [t["detect_s"][sy] for t in trials if t["detect_s"][sy] is not None]
        out[sy] = {"n": len(xs), "missed": len(trials) - len(xs)}
        if xs:
            out[sy].update({k: round(pct(xs, q), 3) for k, q in
                            (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))})
    # What the notifier adds on top of the monitor's verdict (its route's group_wait_ms).
    share = [t["detect_s"]["vitals"] - t["detect_s"]["vitals_nats"] for t in trials
             if t["detect_s"]["vitals"] is not None and t["detect_s"]["vitals_nats"] is not None]
    if share:
        out["notifier_share"] = {"p50": round(pct(share, 50), 3), "max": round(max(share), 3)}
    # Why Vitals said DOWN, numbers blanked ("no sample for N s", "connection lost (...)").
    reasons: dict[str, int] = {}
    for t in trials:
        if t["vitals_down_reasons"] is not None:
            r = re.sub(r"\d+(\.\d+)?", "N", t["vitals_down_reasons"]) or "(none given)"
            reasons[r] = reasons.get(r, 0) + 1
    out["vitals_down_reasons"] = reasons
    # Prometheus per simulator: each target's scrape phase against the rule evaluation is
    # fixed for a run, so its median moves with it.
    per: dict[str, list[float]] = {}
    for t in trials:
        if t["detect_s"]["prometheus"] is not None:
            per.setdefault(t["service"], []).append(t["detect_s"]["prometheus"])
    out["prometheus_p50_by_service"] = {k: round(pct(v, 50), 3) for k, v in sorted(per.items())}
    pr, vi = out["prometheus"], out["vitals"]
    if pr.get("p50") and vi.get("p50"):
        out["ratio_p50"] = round(pr["p50"] / vi["p50"], 2)
        out["ratio_p99"] = round(pr["p99"] / vi["p99"], 2)
    return out


def seconds(v: float) -> str:
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def table(summary: dict, markdown: bool) -> str:
    def cell(d: dict, k: str) -> str:
        return seconds(d[k]) if k in d else "-"
    rows = []
    if markdown:
        rows += ["| from `kill -9` to | n | p50 | p90 | p99 | max | missed |",
                 "|---|---|---|---|---|---|---|"]
        for sy in SYSTEMS:
            d = summary[sy]
            rows.append(f"| {LABEL[sy]} | {d['n']} | " + " | ".join(
                cell(d, k) for k in ("p50", "p90", "p99", "max")) + f" | {d['missed']} |")
    else:
        w = max(len(v) for v in LABEL.values())
        rows.append(f"{'seconds from kill -9 to':<{w}} {'n':>3} {'p50':>7} {'p90':>7} "
                    f"{'p99':>7} {'max':>7} {'missed':>6}")
        for sy in SYSTEMS:
            d = summary[sy]
            rows.append(f"{LABEL[sy].replace('`', ''):<{w}} {d['n']:>3} " + " ".join(
                f"{cell(d, k):>7}" for k in ("p50", "p90", "p99", "max")) + f" {d['missed']:>6}")
    return "\n".join(rows)


def ratios(summary: dict) -> str:
    if "ratio_p50" not in summary:
        return "ratio: n/a (a system had no arrivals)"
    return (f"Prometheus / Vitals (notifier): medians {summary['ratio_p50']:.2f}x, "
            f"p99s {summary['ratio_p99']:.2f}x")


def why(summary: dict) -> str:
    share = summary.get("notifier_share")
    reasons = ", ".join(f"`{r}` x{n}" for r, n in sorted(summary["vitals_down_reasons"].items()))
    return ((f"The notifier adds {seconds(share['p50'])} (median; max {seconds(share['max'])}) to the "
             "monitor's verdict. " if share else "")
            + f"Vitals' DOWN reasons: {reasons or 'none'}.")


def by_service(summary: dict) -> str:
    per = summary["prometheus_p50_by_service"]
    if len(per) < 2:
        return ""
    return ("Each target's scrape phase against the evaluation is fixed for a run (Prometheus "
            "spreads targets over the interval), so Prometheus's median differs by simulator "
            "and moves between runs: " + ", ".join(f"{k} {seconds(v)}" for k, v in per.items())
            + ".")


def vitals_path(summary: dict) -> tuple[str, str]:
    """How Vitals found the crashes (from the reasons its DOWN verdicts gave), and what that
    leaves unmeasured."""
    reasons = summary["vitals_down_reasons"]
    by_conn = sum(n for r, n in reasons.items() if r.startswith("connection lost"))
    if by_conn and by_conn == sum(reasons.values()):
        return ("Vitals' monitor hears the server's disconnect advisory as soon as the kernel "
                "closes the dead process's socket.",
                "A process that hangs, or a host cut off the network, keeps its socket: that "
                "is found by the heartbeat timeout instead, which `kill -9` does not measure.")
    return ("Vitals' monitor judged these crashes (some or all) by the heartbeat timeout: no "
            "sample for that long, counted from the last sample before the kill.", "")


def short_version(line: str) -> str:
    """`prometheus, version 2.42.0+ds (branch: ...)` -> `2.42.0+ds`; nats' `v2.15.1` -> `2.15.1`."""
    m = re.search(r"version (\S+)|\bv(\d\S*)", line)
    return (m.group(1) or m.group(2)) if m else line


def write_doc(doc: Path, summary: dict, st: dict, when: str, load: tuple, command: str,
              kills: int) -> None:
    """Rewrites the lines between the compare markers of `doc`; nothing else."""
    text = doc.read_text()
    lines = text.split("\n")
    try:
        b = next(i for i, l in enumerate(lines) if l.startswith(BEGIN))
        e = next(i for i, l in enumerate(lines) if i > b and l.strip() == END)
    except StopIteration:
        raise RegionMissing(f"{doc}: no `{BEGIN} ...-->` ... `{END}` region") from None

    def wrap(text: str) -> list[str]:
        # A list item's next lines are indented, so they stay in the item.
        return textwrap.wrap(text, 95, break_on_hyphens=False,
                             subsequent_indent="  " if text.startswith("- ") else "")

    how, caveat = vitals_path(summary)
    rank = ("nearest rank: with fewer than 100 trials p99 is the worst"
            if kills < 100 else "nearest rank")
    body = [
        "### Side by side with Prometheus (`make compare`)",
        "",
        *wrap(f"`{command}` on {when}, release binaries; load average {load[0]:.2f} at the "
              f"start, {load[1]:.2f} at the end (2 cores shared with other work: figures move "
              "by a few hundred ms between runs). Each trial `kill -9`s one of the simulators, "
              "chosen at random, at a random phase (0-1 s) against the 1 s probes and samples, "
              "and times from the kill to the alert's arrival at one webhook receiver; then "
              "restarts it and waits until both systems resolved."),
        "",
        table(summary, markdown=True),
        "",
        *wrap(f"{ratios(summary)} ({rank}). {why(summary)}"),
        "",
        *wrap("Where the time goes. Prometheus learns of the crash at its next probe (up to "
              "one scrape interval), the rule sees it at its next evaluation (up to one "
              "evaluation interval) and fires `for` after that; Alertmanager then sends at "
              f"once. {by_service(summary)} {how} The notifier then waits its route's group_wait_ms to batch what "
              "fires together (`scripts/compare.sh --group-wait-ms 0` measures it without). "
              f"{caveat}".rstrip()),
        "",
        *wrap(f"- Prometheus {st['prometheus']} (Debian): {st['prometheus_cfg']} "
              "(config/compare/)."),
        f"- Blackbox exporter {st['blackbox']} (Debian).",
        *wrap(f"- Alertmanager {st['alertmanager']} (Debian): {st['alertmanager_cfg']}."),
        *wrap(f"- Vitals, nats-server {st['nats_server']}: {st['vitals_cfg']}."),
        *wrap(f"- Simulators: {st['simulators']}. Raw trials: target/compare/results.json."),
    ]
    lines[b + 1:e] = body
    doc.write_text("\n".join(lines))
