#!/usr/bin/env python3
"""Render docs/dashboard.png: panels of deploy/grafana/siesta.json drawn with
matplotlib from a real Prometheus that scrapes Siesta (docs/render-demo.sh
makes such data on the local cluster). Not a Grafana screenshot: the same
PromQL expressions, queried through Prometheus' HTTP API, plotted here.

    python3 docs/render.py --prometheus http://127.0.0.1:19090 --minutes 6
"""
import argparse
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def api(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=20) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"{url}: {body}")
    return body["data"]["result"]


def fill(expr, range_s, rate_s):
    return (expr.replace("$__rate_interval", f"{rate_s}s")
            .replace("$__range", f"{range_s}s")
            .replace("$namespace", ".*")
            .replace("$team", ".*"))


def legend(fmt, metric):
    out = fmt or "value"
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--minutes", type=float, default=6)
    ap.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    a = ap.parse_args()
    dash = json.loads((ROOT / "deploy/grafana/siesta.json").read_text())
    panels = {p["title"]: p for p in dash["panels"]}
    end = time.time()
    start = end - a.minutes * 60
    range_s = int(a.minutes * 60)
    step, rate_s = 2, 20

    def series(title, i=0):
        t = panels[title]["targets"][i]
        q = fill(t["expr"], range_s, rate_s)
        return t.get("legendFormat", ""), api(a.prometheus, "/api/v1/query_range",
                                              query=q, start=start, end=end, step=step)

    def instant(title, i=0):
        t = panels[title]["targets"][i]
        q = fill(t["expr"], range_s, rate_s)
        return t.get("legendFormat", ""), api(a.prometheus, "/api/v1/query", query=q, time=end)

    plt.style.use("dark_background")
    fig, axes = plt.subplots(3, 3, figsize=(18, 12))
    fig.suptitle("Siesta: sleep mode and savings (panels rendered from real Prometheus data "
                 "by docs/render.py, not a Grafana screenshot)", fontsize=13)

    def timeseries(ax, title, targets=(0,), scale=1.0, unit="", stack=False):
        xs_all, ys_all, labels = [], [], []
        for i in targets:
            fmt, result = series(title, i)
            for s in result:
                xs = [(float(t) - end) / 60 for t, _ in s["values"]]
                ys = [float(v) * scale for _, v in s["values"]]
                xs_all.append(xs)
                ys_all.append(ys)
                labels.append(legend(fmt, s["metric"]))
        if stack and xs_all:
            # align on the union of timestamps
            grid = sorted({x for xs in xs_all for x in xs})
            aligned = [[dict(zip(xs, ys)).get(x, 0.0) for x in grid]
                       for xs, ys in zip(xs_all, ys_all)]
            ax.stackplot(grid, aligned, labels=labels, alpha=0.7)
        else:
            for xs, ys, lab in zip(xs_all, ys_all, labels):
                ax.plot(xs, ys, label=lab, drawstyle="steps-post")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("minutes ago")
        if unit:
            ax.set_ylabel(unit)
        ax.grid(alpha=0.2)
        if labels:
            ax.legend(fontsize=8, loc="upper left")

    def bars(ax, title, scale=1.0, unit="", fmt_value="{:.4f}"):
        fmt, result = instant(title)
        items = sorted(((legend(fmt, s["metric"]), float(s["value"][1]) * scale) for s in result),
                       key=lambda kv: kv[1])
        names = [k for k, _ in items]
        vals = [v for _, v in items]
        ax.barh(names, vals, color="#73bf69")
        for y, v in enumerate(vals):
            ax.text(v, y, " " + fmt_value.format(v), va="center", fontsize=9)
        ax.set_title(title, fontsize=11)
        if unit:
            ax.set_xlabel(unit)
        ax.grid(alpha=0.2, axis="x")

    timeseries(axes[0][0], "Namespaces asleep and waking", targets=(0, 1))
    timeseries(axes[0][1], "Money saved per hour, by namespace", unit="USD per hour", stack=True)
    bars(axes[0][2], "Saved in the time range, by namespace", unit="USD")
    timeseries(axes[1][0], "CPU cores not requested (asleep)", unit="cores", stack=True)
    timeseries(axes[1][1], "Memory not requested (asleep)", scale=1 / 2**30, unit="GiB", stack=True)
    bars(axes[1][2], "Share of time asleep", scale=100, unit="% of the range", fmt_value="{:.0f}%")
    timeseries(axes[2][0], "Wake latency p50 and p99", targets=(0, 1), unit="seconds")
    bars(axes[2][1], "What wakes namespaces", fmt_value="{:.0f}")
    # the overview stats, as text
    ax = axes[2][2]
    ax.axis("off")
    lines = []
    for title, scale, fmt_value in [
        ("Namespaces asleep now", 1, "{:.0f}"),
        ("Saved in the time range", 1, "{:.4f}"),
        ("Saving now, per 30 days", 1, "{:.2f}"),
        ("CPU core-hours saved", 1, "{:.2f}"),
        ("Memory GiB-hours saved", 1, "{:.2f}"),
    ]:
        fmt, result = instant(title)
        for s in result:
            lab = legend(fmt, s["metric"])
            suffix = f" {lab}" if fmt else ""
            lines.append(f"{title}: {fmt_value.format(float(s['value'][1]) * scale)}{suffix}")
    ax.text(0.0, 1.0, "\n\n".join(lines), va="top", fontsize=12, family="monospace")
    ax.set_title(f"Overview (last {a.minutes:g} minutes)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(a.out, dpi=80)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
