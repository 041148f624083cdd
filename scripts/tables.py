"""Shared pieces of the results-table scripts (scripts/*-table.py)."""
import json
import os
import platform
import statistics
import subprocess
import sys


def work_dirs(usage):
    """The work directories named on the command line (the table scripts take several, so runs
    made into different directories, e.g. seeds on two machines, make one table); exits with
    `usage` when there are none."""
    if len(sys.argv) < 2:
        sys.exit(f"usage: {os.path.basename(sys.argv[0])} {usage}")
    for work in sys.argv[1:]:
        if not os.path.isdir(work):
            sys.exit(f"{work}: not a directory")
    return sys.argv[1:]


def dirs_by_name(works, is_run):
    """{name: [paths]} of the directories directly under the work directories `works` for
    which `is_run(path)` holds, sorted by name; a name's paths in the order of `works`."""
    found = {}
    for work in works:
        for name in os.listdir(work):
            path = os.path.join(work, name)
            if os.path.isdir(path) and is_run(path):
                found.setdefault(name, []).append(path)
    return dict(sorted(found.items()))


def run_dirs(works, is_run):
    """(name, path) of every run directory (dirs_by_name). The same run in two work
    directories is an error: which one the table should count is not known."""
    runs = []
    for name, paths in dirs_by_name(works, is_run).items():
        if len(paths) > 1:
            sys.exit(f"{name} is in both {os.path.dirname(paths[0])} and {os.path.dirname(paths[1])}: name one of them")
        runs.append((name, paths[0]))
    return runs


def mean_std(values):
    """Percentages: one value as is, several as mean ± sample std."""
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def machine():
    """This machine's CPU model, CPU count and architecture."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.machine()}"


def machine_line(reports):
    """The machines `reports` (a list of parsed bdaudit JSON reports) were computed on, from
    the `machine` record bdaudit writes into each. Reports made before that record existed are
    counted and named by this machine, marked as such: their own is not known."""
    seen, unrecorded = [], 0
    for r in reports:
        m = r.get("machine")
        if m is None:
            unrecorded += 1
        elif describe(m) not in seen:
            seen.append(describe(m))
    if unrecorded:
        seen.append(f"{here()} (where this table was printed: {unrecorded} of {len(reports)} reports "
                    "predate bdaudit's machine record)")
    return "Machine: " + "; and ".join(seen or [here()]) + ".\n"


def describe(m):
    """One report's `machine` record in words."""
    where = f"{m['cpu']}, {m['cpus']} CPUs, {m['arch']}"
    if m["device"] == "cuda":
        return f"{where}; burn-cuda on {m.get('gpu') or 'an NVIDIA GPU'}"
    if m["device"] == "cpu":
        core = m.get("openblas")
        return f"{where}; " + (f"ndarray + OpenBLAS ({core} kernels) backend" if core else "ndarray backend (pure Rust)")
    return f"{where}; {m['device']} backend"


def here():
    """This machine and the backend DEVICE names, as the table scripts' callers run them."""
    device = os.environ.get("DEVICE", "cpu")
    if device == "cuda":
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip() or "?"
        backend = f"burn-cuda on {gpu}"
    elif device == "cpu":
        core = openblas_core()
        if core is None:
            backend = "ndarray backend (BLAS not known: no BDAUDIT_BIN to ask)"
        elif core:
            backend = f"ndarray + OpenBLAS ({core} kernels) backend"
        else:
            backend = "ndarray backend (pure Rust, no OpenBLAS)"
    else:
        backend = f"{device} backend"
    return f"{machine()}; {backend}"


def openblas_core():
    """What `bdaudit info` (BDAUDIT_BIN, which scripts/lib/bin.sh exports) reports of OpenBLAS
    on this machine: its kernels' name, "" for a build without OpenBLAS, None when there was
    no binary to ask. CPU times depend on the kernels (the generic fallback trains 1.5-1.8x
    slower, docs/benchmarks.md)."""
    binary = os.environ.get("BDAUDIT_BIN")
    if not binary:
        return None
    try:
        run = subprocess.run([binary, "info", "--json"], capture_output=True, text=True, check=True)
        return (json.loads(run.stdout).get("openblas") or {}).get("core", "")
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


def recalls(counts):
    """Recall per class (%) from a confusion matrix (rows: true class, columns: predicted)."""
    return [100 * row[c] / max(1, sum(row)) for c, row in enumerate(counts)]


def label_names(data_dir):
    """Class names from a data directory's labels.tsv (index order), or [] when it has none."""
    path = os.path.join(data_dir, "labels.tsv")
    if not os.path.isfile(path):
        return []
    return [line.split("\t")[1] for line in open(path).read().splitlines()[1:]]


def recall_cells(names, *confusions):
    """"name: a → b" per class, one recall per confusion matrix (class index when unnamed)."""
    per_matrix = [recalls(c) for c in confusions]
    return ", ".join(
        f"{names[c] if c < len(names) else c}: " + " → ".join(f"{r[c]:.1f}" for r in per_matrix)
        for c in range(len(per_matrix[0]))
    )


def trigger_units(attack):
    """attack.json's trigger as the word sequences one insertion can be (BadNets: each word)."""
    trigger = attack["config"]["trigger"]
    if trigger["kind"] == "badnets":
        return [[w] for w in trigger["words"]]
    return [trigger["sentence"].split()]
