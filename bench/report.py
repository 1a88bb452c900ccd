#!/usr/bin/env python3
"""Writes bench/RESULTS.md from bench/run.sh's raw measurements.

raw.tsv: scenario, target, round, tps, latency_avg_ms, p99_ms (or `fail`), one pgbench run
a line. idle.txt: `idle <n> <rss_before_kib> <rss_after_kib> <bytes_per_conn>` lines.
Figures per (scenario, target) are means over the rounds; ratios are ratios of those means,
with the range of the per-round ratios beside them to show the noise.
"""

import argparse
import collections
import statistics
import time

TARGET_NAMES = {
    "direct": "PostgreSQL (direct)",
    "pgbouncer": "PgBouncer",
    "pgshroud": "pgshroud",
    "pgshroud-enc": "pgshroud (rules)",
    "pgshroud-variant": "pgshroud variant",
    "pgshroud-x2": "pgshroud, two instances (clients split)",
}
PASS_TARGET_SCENARIOS = ["select-simple-c16", "select-extended-c16", "select-prepared-c16"]


def load_raw(path):
    runs = collections.defaultdict(dict)  # (scenario, target) -> round -> (tps, lat, p99)
    order = []
    with open(path) as f:
        for line in f:
            scenario, target, rnd, tps, lat, p99, cpu = line.rstrip("\n").split("\t")
            if scenario not in order:
                order.append(scenario)
            if tps == "fail":
                runs[(scenario, target)][rnd] = None
            else:
                cpu = None if cpu == "-" else float(cpu)
                runs[(scenario, target)][rnd] = (float(tps), float(lat), float(p99), cpu)
    return runs, order


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def cell(value, fmt="{:.0f}"):
    return "fail" if value is None else fmt.format(value)


def summary(runs, scenario, target):
    rounds = runs.get((scenario, target))
    if not rounds:
        return None
    ok = [r for r in rounds.values() if r is not None]
    if not ok:
        return (None, None, None, len(rounds), None)
    return (
        mean(r[0] for r in ok),
        mean(r[1] for r in ok),
        mean(r[2] for r in ok),
        len(rounds) - len(ok),
        mean(r[3] for r in ok),
    )


def ratio(runs, a, b):
    """(ratio of mean TPS, min per-round ratio, max per-round ratio) of targets a/b."""
    sa, sb = runs.get(a, {}), runs.get(b, {})
    ma, mb = summary(runs, *a), summary(runs, *b)
    if not ma or not mb or ma[0] is None or mb[0] is None:
        return None
    per_round = [
        sa[r][0] / sb[r][0] for r in sa if sa.get(r) and sb.get(r) and sb[r][0] > 0
    ]
    return (ma[0] / mb[0], min(per_round), max(per_round))


def cpu_ratio(runs, scenario, a, b, scenario_b=None):
    """CPU per transaction of target `a` over target `b` (of `scenario_b` when given)."""
    sa, sb = summary(runs, scenario, a), summary(runs, scenario_b or scenario, b)
    if not sa or not sb or sa[4] is None or not sb[4]:
        return "n/a"
    return f"{sa[4] / sb[4]:.2f}"


def fmt_ratio(r):
    if r is None:
        return "n/a"
    return f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"


def main():
    p = argparse.ArgumentParser()
    for name in ["raw", "idle", "out", "command", "machine", "versions", "duration", "rounds",
                 "scale", "customers", "load"]:
        p.add_argument("--" + name, required=True)
    p.add_argument("--variant", default="")
    a = p.parse_args()
    runs, order = load_raw(a.raw)
    lines = []
    w = lines.append
    w("# pgshroud benchmark results")
    w("")
    w(f"Written by `{a.command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    w("")
    w(f"- Machine: {a.machine}. Load average (1/5/15 min) at start and end of the pgbench runs: "
      f"{a.load}. The machine was shared with other builds: treat absolute figures as noisy, "
      "compare ratios.")
    w(a.versions)
    w(f"- pgbench: {a.duration} s per run, {a.rounds} rounds, scale {a.scale}; every round runs "
      "every scenario against every target, target order rotating per round. Figures are means "
      "over rounds; ratios are of the mean TPS, with the range of per-round ratios in brackets.")
    w("- Everything on 127.0.0.1, no TLS. PostgreSQL with fsync, synchronous_commit and "
      "full_page_writes off (the proxies are measured, not the disk). PgBouncer in session mode "
      "with a SCRAM auth file; pgshroud relays SCRAM to PostgreSQL. pgshroud runs with "
      "`--log-level warn` on a 2-worker tokio runtime (one per CPU).")
    w(f"- Encrypted scenario: `customers` (email text, age int4 protected; {a.customers} rows "
      "loaded by COPY through pgshroud) and `plain_customers` (same rows, plaintext). Script: a "
      "point lookup by email (`WHERE email = :id`, indexed) and an insert of both columns, "
      "`-M prepared`. pgbench cannot build strings, so emails are 19-digit numbers as text.")
    if a.variant.strip():
        w(f"- pgshroud variant (A/B, same run): {a.variant.strip()}")
    w("")
    w("## Throughput and latency")
    w("")
    w("| Scenario | Target | TPS | avg latency (ms) | p99 latency (ms) | proxy CPU (µs/tx) | failed runs |")
    w("|---|---|---:|---:|---:|---:|---:|")
    for scenario in order:
        for target in TARGET_NAMES:
            s = summary(runs, scenario, target)
            if s is None:
                continue
            cpu = "-" if s[4] is None else f"{s[4]:.1f}"
            w(f"| {scenario} | {TARGET_NAMES[target]} | {cell(s[0])} | {cell(s[1], '{:.3f}')} | "
              f"{cell(s[2], '{:.3f}')} | {cpu} | {s[3]} |")
    w("")
    w("Proxy CPU is the proxy process's user + system time during the run (from /proc, "
      "10 ms ticks) divided by the transactions pgbench completed: the cost the proxy adds, "
      "and a steadier figure than TPS on a shared machine.")
    w("")
    w("## Ratios (TPS)")
    w("")
    variant = any(t == "pgshroud-variant" for (_, t) in runs)
    extra = " variant / pgshroud |" if variant else ""
    w("| Scenario | pgshroud / direct | pgshroud / PgBouncer | proxy CPU per tx, pgshroud / PgBouncer |" + extra)
    w("|---|---:|---:|---:|" + ("---:|" if variant else ""))
    for scenario in order:
        if (scenario, "pgshroud") not in runs:
            continue
        row = (f"| {scenario} | {fmt_ratio(ratio(runs, (scenario, 'pgshroud'), (scenario, 'direct')))} | "
               f"{fmt_ratio(ratio(runs, (scenario, 'pgshroud'), (scenario, 'pgbouncer')))} | "
               f"{cpu_ratio(runs, scenario, 'pgshroud', 'pgbouncer')} |")
        if variant:
            row += (f" {fmt_ratio(ratio(runs, (scenario, 'pgshroud-variant'), (scenario, 'pgshroud')))}"
                    f" (CPU/tx {cpu_ratio(runs, scenario, 'pgshroud-variant', 'pgshroud')}) |")
        w(row)
    for scenario in order:
        if (scenario, "pgshroud-enc") in runs and (scenario, "pgshroud") in runs:
            w(f"| {scenario}: rules loaded, no protected table / pass-through | "
              f"{fmt_ratio(ratio(runs, (scenario, 'pgshroud-enc'), (scenario, 'pgshroud')))} | | "
              f"CPU/tx {cpu_ratio(runs, scenario, 'pgshroud-enc', 'pgshroud')} |" + (" |" if variant else ""))
    for scenario in order:
        if (scenario, "pgshroud-x2") in runs and (scenario, "pgshroud") in runs:
            w(f"| {scenario}: two instances / one | "
              f"{fmt_ratio(ratio(runs, (scenario, 'pgshroud-x2'), (scenario, 'pgshroud')))} | | "
              f"CPU/tx {cpu_ratio(runs, scenario, 'pgshroud-x2', 'pgshroud')} |" + (" |" if variant else ""))
    for mode in ("prepared", "simple"):
        enc = (f"customers-encrypted-{mode}-c16", "pgshroud-enc")
        plain = f"customers-plain-{mode}-c16"
        if enc in runs:
            w(f"| encrypted / pgshroud on plain copy ({mode}) | "
              f"{fmt_ratio(ratio(runs, enc, (plain, 'pgshroud')))} | | "
              f"CPU/tx {cpu_ratio(runs, enc[0], 'pgshroud-enc', 'pgshroud', plain)} |")
            w(f"| encrypted / direct on plain copy ({mode}) | "
              f"{fmt_ratio(ratio(runs, enc, (plain, 'direct')))} | | |")
    w("")

    idle = []
    nofile = None
    try:
        with open(a.idle) as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "idle":
                    idle.append(tuple(int(x) for x in parts[1:5]))
                elif parts and parts[0] == "nofile":
                    nofile = parts[1]
    except FileNotFoundError:
        pass
    w("## Idle connections (pgshroud RSS)")
    w("")
    if idle:
        w("| Idle clients | RSS before (KiB) | RSS after (KiB) | per connection (KiB) |")
        w("|---:|---:|---:|---:|")
        for n, before, after, per in idle:
            w(f"| {n} | {before} | {after} | {per / 1024:.1f} |")
        w("")
        w("Clients log in (trust) through pgshroud to a stub upstream that answers the login and "
          "then stays silent (`bench/src/bin/idle-conns.rs`); RSS is VmRSS after 2 s of idleness, "
          "less VmRSS with one client. "
          f"`ulimit -n` was {nofile}: pgshroud holds two descriptors per session, so the largest "
          "count is capped at (limit - 64) / 2 when the hard limit cannot be raised.")
    else:
        w("Not measured in this run.")
    w("")

    w("## Targets (issue 25)")
    w("")

    def met(ok):
        return "met" if ok else "MISSED"

    for scenario in PASS_TARGET_SCENARIOS:
        r = ratio(runs, (scenario, "pgshroud"), (scenario, "pgbouncer"))
        cpu = cpu_ratio(runs, scenario, "pgshroud", "pgbouncer")
        if r:
            cpu_ok = cpu != "n/a" and float(cpu) <= 0.9
            w(f"- {scenario}: TPS pgshroud/PgBouncer = {r[0]:.2f} (target >= 1.05: "
              f"{met(r[0] >= 1.05)}); proxy CPU/tx = {cpu} (target <= 0.90: {met(cpu_ok)})")
        enc_cpu = cpu_ratio(runs, scenario, "pgshroud-enc", "pgshroud")
        r = ratio(runs, (scenario, "pgshroud-enc"), (scenario, "pgshroud"))
        if r and enc_cpu != "n/a":
            ok = r[0] >= 0.95 and float(enc_cpu) <= 1.05
            w(f"- {scenario}, rules loaded / pass-through: TPS {r[0]:.2f}, CPU/tx {enc_cpu} "
              f"(target within 5 %: {met(ok)})")
    for scenario in ("select-simple-c1", "select-extended-c1", "select-prepared-c1"):
        d, b, p = (summary(runs, scenario, t) for t in ("direct", "pgbouncer", "pgshroud"))
        if d and b and p and None not in (d[2], b[2], p[2]):
            ours, theirs = p[2] - d[2], b[2] - d[2]
            w(f"- {scenario}: added p99 over direct {ours:.3f} ms, PgBouncer's {theirs:.3f} ms "
              f"(target no worse: {met(ours <= theirs)})")
    for mode in ("prepared", "simple"):
        enc = (f"customers-encrypted-{mode}-c16", "pgshroud-enc")
        r = ratio(runs, enc, (f"customers-plain-{mode}-c16", "pgshroud")) if enc in runs else None
        if r:
            w(f"- encrypted / plain copy through pgshroud ({mode}) = {r[0]:.2f} "
              f"(target >= 0.9: {met(r[0] >= 0.9)})")
    if idle:
        n, _, _, per = idle[-1]
        w(f"- idle memory at {n} connections = {per / 1024:.1f} KiB per connection "
          f"(target <= 8 KiB: {met(per <= 8 * 1024)})")
    w("")
    with open(a.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
