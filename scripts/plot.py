#!/usr/bin/python3
"""Pictures of ember runs: training curves, scaling charts and benchmark plots.

  scripts/plot.py metrics RUN.csv [RUN2.csv ...] -o curves.png
      ember_mnist's and ember_cifar10's --metrics CSV (schema: examples/common/metrics_csv.h): loss
      per step and per epoch, test accuracy and learning rate against optimizer steps, one colour
      per run ("(synthetic data)" in the legend of a run on generated data).
  scripts/plot.py scaling SCALING.json -o scaling.png
      ember_scaling --json: weak and strong efficiency and the step-time breakdown (compute,
      exposed communication) against ranks; measured points marked, the alpha-beta model's
      projection to 1024 GPUs dashed.
  scripts/plot.py bench RESULTS.json -o bench.png
      bench/run_cpu_bench.sh --json: ember against its anchors (libtorch, PyTorch) per benchmark,
      medians with min-max whiskers.

The picture type follows the extension of -o: .png or .svg. Headless (matplotlib's Agg backend);
Debian's python3-matplotlib, installed by scripts/setup.sh. Every plotted series carries an SVG id
"series-..." (tests/plot_test.sh counts them). A bad input ends in one line naming the file and the
problem, and exit status 1 (2 for bad arguments).
"""
import csv
import json
import math
import os
import sys

# Picture sizes in inches at DPI: fixed, so the PNG's pixel size is known (tests check it).
DPI = 100
SIZES = {"metrics": (13, 4), "scaling": (15, 4.5), "bench": (10, 5)}

METRICS_COLUMNS = ["kind", "epoch", "step", "loss", "lr", "samples_per_second", "wall_seconds", "epoch_seconds",
                   "train_loss", "train_accuracy", "test_loss", "test_accuracy"]


class InputError(Exception):
    """A problem with an input or output file: printed as one line, exit 1."""


class UsageError(Exception):
    """A problem with the command line: printed as one line, exit 2."""


# ---------------------------------------------------------------------------------------------
# Reading and checking the inputs

def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a text file ({e.reason} at byte {e.start})")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}")


def number(text, where, allow_empty=False):
    if text == "" and allow_empty:
        return None
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where} = {text!r} is not a number")
    if not math.isfinite(v):
        raise InputError(f"{where} = {text!r} is not a finite number")
    return v


def read_metrics(path):
    """The rows of one metrics CSV as dicts of numbers (None for empty cells), kind kept as text, and
    the comment lines ('# ...') before the header: ember_cifar10 writes '# synthetic ...' there when it
    trained on generated data, and the legend says so."""
    text = read_text(path)
    lines = text.splitlines()
    comments = []
    while lines and lines[0].startswith("#"):
        comments.append(lines.pop(0)[1:].strip())
    if not "".join(lines).strip():
        raise InputError(f"{path}: empty file (expected the header {','.join(METRICS_COLUMNS)})")
    try:
        rows = list(csv.reader(lines))
    except csv.Error as e:
        raise InputError(f"{path}: not a valid CSV file ({e})")
    header = rows[0]
    unknown = [c for c in header if c not in METRICS_COLUMNS]
    missing = [c for c in METRICS_COLUMNS if c not in header]
    if unknown:
        raise InputError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))} "
                         f"(expected {','.join(METRICS_COLUMNS)})")
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    out = []
    for line_no, cells in enumerate(rows[1:], start=2 + len(comments)):
        if not cells:
            continue
        where = f"{path} line {line_no}"
        if len(cells) != len(header):
            raise InputError(f"{where}: {len(cells)} cells, expected {len(header)}")
        row = dict(zip(header, cells))
        if row["kind"] not in ("step", "epoch"):
            raise InputError(f"{where}: kind {row['kind']!r} is neither 'step' nor 'epoch'")
        parsed = {"kind": row["kind"]}
        for c in METRICS_COLUMNS[1:]:
            parsed[c] = number(row[c], f"{where}: column {c!r}", allow_empty=True)
        needed = ["epoch", "step", "lr"] + (["loss"] if row["kind"] == "step" else ["train_loss", "test_loss",
                                                                                    "test_accuracy"])
        for c in needed:
            if parsed[c] is None:
                raise InputError(f"{where}: a {row['kind']} row needs column {c!r}, which is empty")
        out.append(parsed)
    if not out:
        raise InputError(f"{path}: no rows after the header")
    return out, comments


def read_json(path):
    text = read_text(path)
    if not text.strip():
        raise InputError(f"{path}: empty file (expected JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})")


def field(obj, key, where, kind="number"):
    """obj[key], checked: a finite number, a string, a list or a dict as `kind` says."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object")
    if key not in obj:
        raise InputError(f"{where}: missing {key!r}")
    v = obj[key]
    ok = {"number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x),
          "string": lambda x: isinstance(x, str),
          "list": lambda x: isinstance(x, list),
          "dict": lambda x: isinstance(x, dict)}[kind](v)
    if not ok:
        raise InputError(f"{where}.{key} = {json.dumps(v)[:40]} is not a {'finite number' if kind == 'number' else kind}")
    return v


# ---------------------------------------------------------------------------------------------
# The three pictures

def new_figure(mode, ncols):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ember", "font.size": 9})
    fig, axes = plt.subplots(1, ncols, figsize=SIZES[mode], dpi=DPI)
    return fig, list(axes) if ncols > 1 else [axes]


def plot_metrics(paths, out):
    runs = [(p, read_metrics(p)) for p in paths]  # every file checked before anything is drawn
    fig, (ax_loss, ax_acc, ax_lr) = new_figure("metrics", 3)
    colors = ["C%d" % i for i in range(10)]
    for i, (path, (rows, comments)) in enumerate(runs):
        name, color = os.path.basename(path), colors[i % len(colors)]
        if any("synthetic" in c for c in comments):
            name += " (synthetic data)"
        steps = [r for r in rows if r["kind"] == "step"]
        epochs = [r for r in rows if r["kind"] == "epoch"]
        x = lambda rs: [r["step"] for r in rs]  # noqa: E731
        if steps:
            (l,) = ax_loss.plot(x(steps), [r["loss"] for r in steps], color=color, lw=1, alpha=0.8,
                                label=f"{name} (per step)")
            l.set_gid(f"series-{i}-loss-step")
        if epochs:
            (l,) = ax_loss.plot(x(epochs), [r["train_loss"] for r in epochs], "o-", color=color, lw=1.5,
                                label=f"{name} train (per epoch)")
            l.set_gid(f"series-{i}-train-loss-epoch")
            (l,) = ax_loss.plot(x(epochs), [r["test_loss"] for r in epochs], "x--", color=color, lw=1.5,
                                label=f"{name} test (per epoch)")
            l.set_gid(f"series-{i}-test-loss-epoch")
            (l,) = ax_acc.plot(x(epochs), [100 * r["test_accuracy"] for r in epochs], "o-", color=color,
                               label=name)
            l.set_gid(f"series-{i}-test-accuracy")
        lr_rows = steps or epochs
        (l,) = ax_lr.plot(x(lr_rows), [r["lr"] for r in lr_rows], color=color, label=name)
        l.set_gid(f"series-{i}-lr")
    ax_loss.set(title="training loss", xlabel="optimizer step", ylabel="cross-entropy (log scale)")
    ax_loss.set_yscale("log")
    ax_acc.set(title="test accuracy (end of each epoch)", xlabel="optimizer step", ylabel="%")
    ax_lr.set(title="learning rate", xlabel="optimizer step", ylabel="lr")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save(fig, out)


def check_scaling(path, d):
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object (ember_scaling --json writes one)")
    measured = field(d, "measured", path, "list")
    for i, m in enumerate(measured):
        where = f"{path}: measured[{i}]"
        if field(m, "mode", where, "string") not in ("weak", "strong"):
            raise InputError(f"{where}.mode = {m['mode']!r} is neither 'weak' nor 'strong'")
        for k in ("ranks", "efficiency", "step_ms", "comm_wait_ms"):
            field(m, k, where)
    projection = field(d, "projection", path, "dict")
    points = field(projection, "points", f"{path}: projection", "list")
    for i, p in enumerate(points):
        where = f"{path}: projection.points[{i}]"
        field(p, "algorithm", where, "string")
        for k in ("gpus", "compute_ms", "exposed_comm_ms", "weak_efficiency_overlap", "strong_efficiency_overlap"):
            field(p, k, where)
    ring = [p for p in points if p["algorithm"] == "ring"]
    if not ring:
        raise InputError(f"{path}: projection.points has no 'ring' points")
    if not measured:
        raise InputError(f"{path}: measured is empty")
    return measured, sorted(ring, key=lambda p: p["gpus"])


def plot_scaling(path, out):
    d = read_json(path)
    measured, ring = check_scaling(path, d)
    fig, (ax_weak, ax_strong, ax_time) = new_figure("scaling", 3)
    gpus = [p["gpus"] for p in ring]
    for ax, mode, key in ((ax_weak, "weak", "weak_efficiency_overlap"),
                          (ax_strong, "strong", "strong_efficiency_overlap")):
        rows = sorted((m for m in measured if m["mode"] == mode), key=lambda m: m["ranks"])
        if rows:
            (l,) = ax.plot([m["ranks"] for m in rows], [100 * m["efficiency"] for m in rows], "o", color="C0",
                           ms=8, label=f"measured ({d.get('communicator', '?')}, {d.get('device', '?')})")
            l.set_gid(f"series-{mode}-measured")
        (l,) = ax.plot(gpus, [100 * p[key] for p in ring], "--", color="C1", label="model: ring, overlap")
        l.set_gid(f"series-{mode}-model")
        ax.set(title=f"{mode} scaling efficiency", xlabel="ranks (GPUs in the model)", ylabel="% of ideal")
        ax.set_ylim(bottom=0)
    weak = sorted((m for m in measured if m["mode"] == "weak"), key=lambda m: m["ranks"])
    if weak:
        r = [m["ranks"] for m in weak]
        (l,) = ax_time.plot(r, [m["step_ms"] - m["comm_wait_ms"] for m in weak], "o", color="C0", ms=8,
                            label="measured compute")
        l.set_gid("series-time-compute-measured")
        (l,) = ax_time.plot(r, [m["comm_wait_ms"] for m in weak], "s", color="C3", ms=8,
                            label="measured exposed comm (wait)")
        l.set_gid("series-time-comm-measured")
    (l,) = ax_time.plot(gpus, [p["compute_ms"] for p in ring], "--", color="C0", label="model compute")
    l.set_gid("series-time-compute-model")
    (l,) = ax_time.plot(gpus, [p["exposed_comm_ms"] for p in ring], "--", color="C3", label="model exposed comm")
    l.set_gid("series-time-comm-model")
    ax_time.set(title="weak-scaling step time", xlabel="ranks (GPUs in the model)", ylabel="ms per step")
    ax_time.set_yscale("symlog", linthresh=0.01)
    for ax in (ax_weak, ax_strong, ax_time):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], ["1", "2", "4", "8", "16", "32", "64", "128",
                                                                       "256", "512", "1024"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    proj = d["projection"]
    fig.suptitle(f"ember_scaling, model {d.get('model', '?')}: measured at {d.get('world_size', '?')} rank(s); "
                 f"dashed: alpha-beta model (docs/scaling_model.md) from a {proj.get('step_ms', 0):.2f} ms step "
                 f"({proj.get('step_source', '?')}) — a prediction, not a measurement", fontsize=9)
    save(fig, out)


def check_bench(path, d):
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object (bench/run_cpu_bench.sh --json writes one)")
    benchmarks = field(d, "benchmarks", path, "list")
    if not benchmarks:
        raise InputError(f"{path}: benchmarks is empty")
    for i, b in enumerate(benchmarks):
        where = f"{path}: benchmarks[{i}]"
        field(b, "name", where, "string")
        field(b, "unit", where, "string")
        results = field(b, "results", where, "dict")
        if not results:
            raise InputError(f"{where}.results is empty")
        for fw, r in results.items():
            lo, med, hi = (field(r, k, f"{where}.results.{fw}") for k in ("min", "median", "max"))
            if not lo <= med <= hi:
                raise InputError(f"{where}.results.{fw}: min {lo} <= median {med} <= max {hi} does not hold")
            if lo <= 0:
                raise InputError(f"{where}.results.{fw}.min = {lo} is not a positive time")
    return benchmarks


def plot_bench(path, out):
    d = read_json(path)
    benchmarks = check_bench(path, d)
    fig, (ax,) = new_figure("bench", 1)
    frameworks = list(dict.fromkeys(fw for b in benchmarks for fw in b["results"]))
    width = 0.8 / len(frameworks)
    for j, fw in enumerate(frameworks):
        xs, med, lo, hi = [], [], [], []
        for i, b in enumerate(benchmarks):
            r = b["results"].get(fw)
            if r is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            med.append(r["median"])
            lo.append(r["median"] - r["min"])
            hi.append(r["max"] - r["median"])
        bars = ax.errorbar(xs, med, yerr=[lo, hi], fmt="o", ms=7, capsize=4, color=f"C{j}", label=fw)
        bars.lines[0].set_gid(f"series-{fw}")
        for x, m in zip(xs, med):
            ax.annotate(f"{m:.3g}", (x, m), xytext=(6, -3), textcoords="offset points", fontsize=7)
    ax.set_xticks(range(len(benchmarks)), [f"{b['name']}\n({b['unit']})" for b in benchmarks])
    ax.set_yscale("log")
    ax.set_ylabel("time (log scale): median, whiskers min-max")
    runs = d.get("runs", "?")
    smoke = " — SMOKE RUN (--limit): these numbers mean nothing" if d.get("limit") else ""
    ax.set_title(f"CPU benchmark, {d.get('threads', '?')} thread(s), {runs} run(s) each (lower is faster){smoke}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    save(fig, out)


def save(fig, out):
    fig.tight_layout()
    ext = os.path.splitext(out)[1].lower()[1:]
    try:
        fig.savefig(out, format=ext, dpi=DPI, metadata={"Date": None} if ext == "svg" else None)
    except OSError as e:
        raise InputError(f"{out}: cannot write the picture: {e.strerror or e}")


# ---------------------------------------------------------------------------------------------
# Command line

USAGE = "usage: plot.py metrics RUN.csv [RUN2.csv ...] -o OUT | scaling SCALING.json -o OUT | bench RESULTS.json -o OUT"


def parse_args(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    mode, rest = argv[0], argv[1:]
    if mode not in ("metrics", "scaling", "bench"):
        raise UsageError(f"unknown mode {mode!r} (expected metrics, scaling or bench)")
    inputs, out = [], None
    i = 0
    while i < len(rest):
        if rest[i] in ("-o", "--output"):
            if i + 1 >= len(rest):
                raise UsageError(f"{rest[i]} needs a file name")
            out = rest[i + 1]
            i += 2
        elif rest[i].startswith("-") and rest[i] != "-":
            raise UsageError(f"unknown option {rest[i]!r}")
        else:
            inputs.append(rest[i])
            i += 1
    if out is None:
        raise UsageError(f"{mode}: -o OUT.png or -o OUT.svg is required")
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".png", ".svg"):
        raise UsageError(f"{out}: unknown picture type {ext or '(no extension)'!r} (use .png or .svg)")
    if not inputs:
        raise UsageError(f"{mode}: no input file given")
    if mode != "metrics" and len(inputs) > 1:
        raise UsageError(f"{mode}: takes one input file, got {len(inputs)}")
    return mode, inputs, out


def main(argv):
    inputs = []
    try:
        mode, inputs, out = parse_args(argv)
        if mode == "metrics":
            plot_metrics(inputs, out)
        elif mode == "scaling":
            plot_scaling(inputs[0], out)
        else:
            plot_bench(inputs[0], out)
    except UsageError as e:
        print(f"plot.py: {e}", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"plot.py: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"plot.py: {e.name or 'matplotlib'} is not installed (bash scripts/setup.sh installs python3-matplotlib)",
              file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001  a bug here must still be one line, not a traceback
        print(f"plot.py: {' '.join(inputs) or 'plot.py'}: unexpected error: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"plot.py: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
