#!/usr/bin/env python3
"""The bookkeeping half of bench/run_cpu_bench.sh (standard library only).

  cpu_bench_report.py row --framework F --model M --run N --command CMD --output OUT --time TIME \
                          --libs LIBS --limit L
      One measured process -> one JSON line on stdout (and a progress line on stderr): the
      program's own JSON line (the last line of OUT starting with '{'), GNU time's
      "maxrss_kb=... elapsed_s=..." (TIME), and the library paths sampled from /proc/PID/maps (LIBS).

  cpu_bench_report.py report RESULTS --threads T --runs R --limit L --load-after "..." [--csv FILE]
                             [--json FILE]
      All rows -> the markdown report on stdout: per framework and model, median (min-max) of the
      training loop and of the whole process, ratios of the medians against ember, test accuracy,
      peak RSS, the libraries each side loaded, and the commands. --csv writes one row per framework,
      model and batch (bench/roofline.py reads it); --json the training-loop medians with min and
      max per benchmark and framework, which `scripts/plot.py bench FILE -o bench.png` draws.

  cpu_bench_report.py json CSV --out FILE
      The same JSON from a CSV that --csv wrote earlier (its loop_median_s, loop_min_s, loop_max_s).

The JSON ("schema": "ember_bench/1"): threads, runs, limit (non-zero: a smoke run whose numbers mean
nothing), and benchmarks[]: name ("mlp, batch 128"), model, batch, unit (s/epoch or s/step), and
results{framework: {median, min, max, runs}} (seconds of the training loop, see run_cpu_bench.sh).
"""
import argparse
import csv
import json
import re
import statistics
import sys

MNIST_BATCH = {"mlp": 128, "lenet": 64, "cnn": 64}


def make_row(a):
    with open(a.output) as f:
        lines = [l for l in f if l.startswith("{")]
    if not lines:
        sys.exit(f"cpu_bench_report.py: no JSON line in the output of {a.command}")
    r = json.loads(lines[-1])
    with open(a.time) as f:
        m = re.search(r"maxrss_kb=(\d+) elapsed_s=([\d.]+)", f.read())
    if not m:
        sys.exit(f"cpu_bench_report.py: no GNU time line in {a.time} for {a.command}")
    with open(a.libs) as f:
        sampled = {l.strip() for l in f if l.strip()}
    resnet = a.model == "resnet20"
    row = {
        "framework": a.framework, "model": a.model, "run": a.run, "command": a.command,
        "batch": r.get("batch") or MNIST_BATCH[a.model], "threads": r.get("threads"),
        "loop_s": r["step_ms_median"] / 1000 if resnet else r["epoch_seconds"],
        "process_s": float(m.group(2)), "rss_mb": int(m.group(1)) / 1024,
        "accuracy": r.get("test_accuracy"),
        "libs": sorted(sampled | set(r.get("libs", []))),
        "samples": None if resnet else (a.limit if a.limit > 0 else 60000),
    }
    print(f"  {a.framework:8} {a.model:8} batch {row['batch']:3} run {a.run}: loop {row['loop_s']:.4f} s, "
          f"process {row['process_s']:.2f} s, RSS {row['rss_mb']:.0f} MB", file=sys.stderr)
    print(json.dumps(row))


def spread(values):
    return statistics.median(values), min(values), max(values)


def fmt_spread(values, digits):
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def group(rows):
    """(model, batch) -> framework -> list of rows, in the order they first ran."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["batch"]), {}).setdefault(r["framework"], []).append(r)
    return groups


def ratio(groups_fw, key, other):
    if "ember" not in groups_fw or other not in groups_fw:
        return "-"
    e = statistics.median(r[key] for r in groups_fw["ember"])
    o = statistics.median(r[key] for r in groups_fw[other])
    return f"{e / o:.2f}"


def report(a):
    with open(a.results) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    groups = group(rows)
    unit = lambda model: "s/step" if model == "resnet20" else "s/epoch"  # noqa: E731
    print(f"## CPU benchmark: {a.threads} thread(s), {a.runs} run(s) each, median (min-max)\n")
    if a.limit:
        print(f"**Smoke run: MNIST trained on {a.limit} samples only; these numbers mean nothing.**\n")
    print("| model | batch | framework | training loop | whole process s | loop vs ember | process vs ember "
          "| test acc % | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (model, batch), by_fw in groups.items():
        for fw, rs in by_fw.items():
            loop = fmt_spread([r["loop_s"] for r in rs], 4 if model == "resnet20" else 2) + " " + unit(model)
            proc = fmt_spread([r["process_s"] for r in rs], 2)
            accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
            acc = f"{statistics.median(accs):.2f}" if accs else "-"
            rss = fmt_spread([r["rss_mb"] for r in rs], 0)
            # ember's row shows ember / other for each anchor; the anchors' rows show ember / this anchor.
            rl = "1" if fw == "ember" else ratio(by_fw, "loop_s", fw)
            rp = "1" if fw == "ember" else ratio(by_fw, "process_s", fw)
            print(f"| {model} | {batch} | {fw} | {loop} | {proc} | {rl} | {rp} | {acc} | {rss} |")
    print("\nRatios are ember / that framework, of the medians: below 1 means ember is faster.")

    print("\n### Math libraries each process loaded (/proc/PID/maps)\n")
    libs = {}
    for r in rows:
        libs.setdefault(r["framework"], set()).add(", ".join(r["libs"]) or "(no BLAS, oneDNN or MKL mapped)")
    for fw, sets in libs.items():
        for s in sorted(sets):
            print(f"- {fw}: {s}")

    print("\n### Commands (each run once per run, interleaved)\n\n```")
    for cmd in dict.fromkeys(r["command"] for r in rows):
        print(cmd)
    print("```")
    print(f"\nLoad average after the run: {a.load_after}")

    if a.csv:
        write_csv(a.csv, groups)
    if a.json:
        benchmarks = []
        for (model, batch), by_fw in groups.items():
            results = {}
            for fw, rs in by_fw.items():
                med, lo, hi = spread([r["loop_s"] for r in rs])
                results[fw] = {"median": med, "min": lo, "max": hi, "runs": len(rs)}
            benchmarks.append(benchmark_entry(model, batch, results))
        write_json(a.json, a.threads, a.runs, a.limit, benchmarks)


def benchmark_entry(model, batch, results):
    return {"name": f"{model}, batch {batch}", "model": model, "batch": int(batch),
            "unit": "s/step" if model == "resnet20" else "s/epoch", "results": results}


def write_json(path, threads, runs, limit, benchmarks):
    with open(path, "w") as f:
        json.dump({"schema": "ember_bench/1", "threads": threads, "runs": runs, "limit": limit,
                   "benchmarks": benchmarks}, f, indent=2)
        f.write("\n")


def json_from_csv(a):
    """The --json file from a CSV that report --csv wrote (for runs made before --json existed)."""
    with open(a.csv_file, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"cpu_bench_report.py: {a.csv_file}: no rows")
    benchmarks = {}
    for r in rows:
        key = (r["model"], r["batch"])
        results = benchmarks.setdefault(key, {})
        results[r["framework"]] = {"median": float(r["loop_median_s"]), "min": float(r["loop_min_s"]),
                                   "max": float(r["loop_max_s"]), "runs": int(r["runs"])}
    samples = {r["samples"] for r in rows if r["samples"]}
    limit = 0 if samples <= {"60000"} else int(min(samples, key=int))
    write_json(a.out, int(rows[0]["threads"] or 0), int(rows[0]["runs"]), limit,
               [benchmark_entry(m, b, res) for (m, b), res in benchmarks.items()])


def write_csv(path, groups):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["framework", "model", "batch", "threads", "runs", "samples", "loop_median_s", "loop_min_s",
                    "loop_max_s", "process_median_s", "process_min_s", "process_max_s", "rss_median_mb",
                    "test_accuracy", "libs", "command"])
        for (model, batch), by_fw in groups.items():
            for fw, rs in by_fw.items():
                accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
                w.writerow([fw, model, batch, rs[0]["threads"], len(rs), rs[0]["samples"] or "",
                            *(f"{v:.4f}" for v in spread([r["loop_s"] for r in rs])),
                            *(f"{v:.3f}" for v in spread([r["process_s"] for r in rs])),
                            f"{statistics.median(r['rss_mb'] for r in rs):.1f}",
                            f"{statistics.median(accs):.2f}" if accs else "",
                            " ".join(rs[0]["libs"]), rs[0]["command"]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("row")
    for flag in ("--framework", "--model", "--command", "--output", "--time", "--libs"):
        r.add_argument(flag, required=True)
    r.add_argument("--run", type=int, required=True)
    r.add_argument("--limit", type=int, default=0)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--load-after", default="?")
    p.add_argument("--csv")
    p.add_argument("--json")
    j = sub.add_parser("json")
    j.add_argument("csv_file")
    j.add_argument("--out", required=True)
    a = ap.parse_args()
    {"row": make_row, "report": report, "json": json_from_csv}[a.what](a)


if __name__ == "__main__":
    main()
