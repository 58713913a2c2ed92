#!/usr/bin/env python3
"""Medians of the rounds in run.sh's results.tsv, as a Markdown table, then
the per-round figures and the targets of the performance issue."""
import statistics
import sys

rows = {}
order = []
bad = []
for line in open(sys.argv[1]):
    rnd, name, rest = line.rstrip("\n").split("\t")
    kv = {}
    for part in rest.replace("RESULT ", "").split():
        k, v = part.split("=", 1)
        kv[k] = v
    req = int(kv["requests"])
    secs = int(kv["duration_us"]) / 1e6
    b0, i0, b1, i1 = (int(x) for x in kv["load_core"].split(","))
    r = {
        "round": int(rnd),
        "rps": req / secs,
        "p50": int(kv["p50_us"]) / 1000,
        "p99": int(kv["p99_us"]) / 1000,
        "cpu_us": int(kv["ticks"]) / int(kv["clk_tck"]) * 1e6 / max(req, 1),
        # of which in user space (the rest is the kernel's: sockets, epoll)
        "user_us": int(kv.get("user_ticks", 0)) / int(kv["clk_tck"]) * 1e6 / max(req, 1),
        "proxy_core": int(kv["ticks"]) / int(kv["clk_tck"]) / secs * 100,
        "load_core": (b1 - b0) / max((b1 - b0) + (i1 - i0), 1) * 100,
        "errors": sum(int(kv[k]) for k in kv if k.startswith("err_")),
        "requests": req,
        "forwarded": int(kv["forwarded"]),
    }
    if r["errors"] or r["forwarded"] < req:
        bad.append(f"round {rnd}, {name}: {r['errors']} errors, "
                   f"{r['forwarded']} forwarded of {req} answered")
    if name not in rows:
        rows[name] = []
        order.append(name)
    rows[name].append(r)


def med(name, k):
    return statistics.median(r[k] for r in rows[name])


# Ratios to nginx, or to the first peer (nginx with an https upstream).
base_name = "nginx" if "nginx" in rows else order[0]
base = med(base_name, "rps")
print()
print(f"| peer | req/s | p50 ms | p99 ms | CPU µs/req | of which user | ratio to {base_name} |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in order:
    ratio = f"{med(name, 'rps') / base:.2f}" if base else "-"
    print(f"| {name} | {med(name, 'rps'):,.0f} | {med(name, 'p50'):.2f} | {med(name, 'p99'):.2f} "
          f"| {med(name, 'cpu_us'):.1f} | {med(name, 'user_us'):.1f} | {ratio} |")
print()
print(f"Medians of {len(rows[order[0]])} rounds. Per round (req/s, p99 ms, CPU µs/req, "
      "proxy core busy %, load-generator core busy %):")
for name in order:
    print(f"  {name:36s} " + "  ".join(
        f"[{r['rps']:,.0f} {r['p99']:.2f} {r['cpu_us']:.1f} {r['proxy_core']:.0f}% {r['load_core']:.0f}%]"
        for r in rows[name]))

if bad:
    print()
    print("NOT EVERY REQUEST WAS FORWARDED OR ANSWERED 2xx:")
    for b in bad:
        print("  " + b)

targets = []
if {"nginx", "scrim pseudonymising"} <= rows.keys():
    r = med("scrim pseudonymising", "rps") / base
    targets.append(f"scrim pseudonymising / nginx pass-through req/s = {r:.2f} (target >= 0.9): "
                   + ("met" if r >= 0.9 else "missed"))
    d = med("scrim pseudonymising", "p99") - med("nginx", "p99")
    targets.append(f"scrim pseudonymising p99 - nginx p99 = {d:+.2f} ms (target <= +1 ms): "
                   + ("met" if d <= 1.0 else "missed"))
if {"nginx+lua", "scrim pseudonymising"} <= rows.keys():
    r = med("scrim pseudonymising", "rps") / med("nginx+lua", "rps")
    targets.append(f"scrim pseudonymising / nginx+lua req/s = {r:.2f} (target >= 3): "
                   + ("met" if r >= 3 else "missed"))
if {"nginx", "scrim pass-through"} <= rows.keys():
    r = med("scrim pass-through", "rps") / base
    targets.append(f"scrim pass-through / nginx req/s = {r:.2f} (target >= 1.0): "
                   + ("met" if r >= 1.0 else "missed"))
# The floor is hyper's and tokio's own cost on one thread: what scrim adds
# above it is scrim's work, what the floor lacks against nginx is the stack's.
if "hyper floor" in rows:
    print()
    print("Against the hyper floor (benches/load/floor.rs):")
    if "nginx" in rows:
        print(f"  hyper floor / nginx req/s = {med('hyper floor', 'rps') / base:.2f}")
    for name in ("scrim pass-through", "scrim pseudonymising"):
        if name in rows:
            print(f"  {name}: {med(name, 'rps') / med('hyper floor', 'rps'):.2f} of the floor's req/s, "
                  f"{med(name, 'cpu_us') - med('hyper floor', 'cpu_us'):+.1f} µs CPU per request "
                  f"({med(name, 'user_us') - med('hyper floor', 'user_us'):+.1f} in user space)")

if targets:
    print()
    print("Targets:")
    for t in targets:
        print("  " + t)
sys.exit(1 if bad else 0)
