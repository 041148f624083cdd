"""Shared pieces of the results-table scripts (scripts/*-table.py)."""
import os
import platform
import statistics


def mean_std(values):
    """Percentages: one value as is, several as mean ± sample std."""
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def machine_line():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.machine()}; ndarray + OpenBLAS backend.\n"
