"""Training-step time and memory of ContinuousFWP's solver paths (issue 7).

One training step is a forward pass, a cross-entropy loss and a backward pass, on
random series (3 channels, Hermite path, rk4 with one step per observation, float32).
Three approaches, all measured in this one process:

- **reference**: the generic path with ``adjoint=True``; the slow net runs at every
  solver stage and the adjoint ODE is solved backwards (the FWP paper's setting);
- **generic**: the generic path, back-propagating through torchdiffeq's steps;
- **fast**: :mod:`skfwp.fast_solver`.

Time is the median over ``--repeats`` steps after one warm-up step. Memory is the
peak resident set size of the process during one step (Linux: the ``VmHWM`` high-water
mark, reset before the step) and its increase over the resident size before the step;
on CUDA, ``torch.cuda.max_memory_allocated``. Rows that would take too long or too much
memory are skipped or run once, and the table says so.

Run ``python benchmarks/solver_speed.py`` (``--quick`` for a smoke run of seconds).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import platform
import statistics
import time

import numpy as np
import torch

from skfwp._validation import check_X
from skfwp.nn.fwp import LEARNING_RULES, ContinuousFWP
from skfwp.path import InputPath

APPROACHES = {
    "reference": {"solver_backend": "generic", "adjoint": True},
    "generic": {"solver_backend": "generic", "adjoint": False},
    "fast": {"solver_backend": "fast", "adjoint": False},
}


# -- memory ---------------------------------------------------------------------------


def _proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MB
    return float("nan")


def _release_freed_memory():
    """Hand freed heap memory back to the OS, so that each row starts from a clean RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block of code: ``peak`` (MB) and ``increase`` over its start."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated() / 2**20
        else:
            _release_freed_memory()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.start = _proc_status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.peak = _proc_status("VmHWM")
        self.increase = self.peak - self.start


# -- one measurement ------------------------------------------------------------------


def make_path(batch, length, device, seed=0):
    rng = np.random.default_rng(seed)
    X, lengths = check_X(rng.normal(size=(batch, 3, length)))
    data = InputPath().fit(X, lengths).transform(X, lengths)
    return data.batch(np.arange(batch), device)


def training_step(module, path, target, options):
    module.zero_grad(set_to_none=True)
    logits = module(path, method="rk4", **options)
    torch.nn.functional.cross_entropy(logits, target).backward()


def measure(path, rule, hidden, approach, repeats, device):
    """Median seconds per step, peak memory and its increase (MB)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = ContinuousFWP(path.n_channels, 5, hidden, n_heads=4, learning_rule=rule)
    module = module.to(device)
    target = torch.arange(path.batch_size, device=device) % 5
    options = APPROACHES[approach]

    def step():
        start = time.perf_counter()
        training_step(module, path, target, options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    with PeakMemory(device) as memory:
        first = step()
    if repeats <= 1:
        return first, memory.peak, memory.increase
    return statistics.median(step() for _ in range(repeats)), memory.peak, memory.increase


# -- tables ---------------------------------------------------------------------------


def _fmt(seconds):
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def training_step_table(configs, rules, hidden, repeats, device, once, skip):
    """Table 1: every approach per (batch, length) and rule, ratios to the reference."""
    lines = [
        "| B | T | rule | approach | s / step | peak RSS (MB) | Δ RSS (MB) | speed-up vs reference "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, length in configs:
        path = make_path(batch, length, device)
        for rule in rules:
            results = {}
            for approach in APPROACHES:
                if (batch, length, approach) in skip:
                    results[approach] = None
                    continue
                n = 1 if (batch, length, approach) in once else repeats
                results[approach] = (*measure(path, rule, hidden, approach, n, device), n)
                print(f"  measured B={batch} T={length} {rule} {approach}", flush=True)
            ref = results["reference"]
            for approach, result in results.items():
                if result is None:
                    note = skip[(batch, length, approach)]
                    lines.append(
                        f"| {batch} | {length} | {rule} | {approach} | – | – | – | – | {note} |"
                    )
                    continue
                seconds, peak, increase, n = result
                ratio = f"{ref[0] / seconds:.1f}x" if ref is not None else "–"
                note = "one step, no warm-up" if n == 1 else f"median of {n}"
                lines.append(
                    f"| {batch} | {length} | {rule} | {approach} | {_fmt(seconds)} | {peak:.0f} "
                    f"| {increase:.0f} | {ratio} | {note} |"
                )
    return "\n".join(lines)


def scaling_table(batch, lengths, hiddens, base_length, base_hidden, repeats, device, skip):
    """Table 2: delta rule, fast vs generic back-propagation as T and H grow."""
    lines = [
        "| B | T | H | generic s / step | fast s / step | generic / fast | fast peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    configs = [(length, base_hidden) for length in lengths]
    configs += [(base_length, h) for h in hiddens if h != base_hidden]
    for length, hidden in configs:
        path = make_path(batch, length, device)
        fast, _, fast_peak = measure(path, "delta", hidden, "fast", repeats, device)[:3]
        if (length, hidden) in skip:
            generic, ratio = skip[(length, hidden)], "–"
        else:
            n = repeats if length * hidden <= 1000 * 64 else 1
            seconds = measure(path, "delta", hidden, "generic", n, device)[0]
            generic, ratio = _fmt(seconds), f"{seconds / fast:.1f}x"
        lines.append(
            f"| {batch} | {length} | {hidden} | {generic} | {_fmt(fast)} | {ratio} "
            f"| {fast_peak:.0f} |"
        )
        print(f"  measured scaling T={length} H={hidden}", flush=True)
    return "\n".join(lines)


def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"{datetime.date.today()}, {cpu}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average {load[0]:.1f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--long-reference",
        choices=("once", "skip"),
        default="once",
        help="the reference approach at T=18000: one step, or skip it",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        configs, hidden, repeats = [(4, 20), (2, 60)], 16, 2
        once, skip = set(), {(2, 60, "generic"): "skipped (--quick)"}
        lengths, hiddens, base_length, base_hidden = (20, 40), (16, 32), 20, 16
        scaling_skip = {}
    else:
        configs, hidden, repeats = [(64, 100), (16, 1000), (16, 18000)], 64, args.repeats
        once = {(16, 18000, "reference")}
        skip = {
            (16, 18000, "generic"): "skipped: back-propagating through 72,000 stages "
            "would hold every stage's activations (tens of GB)"
        }
        if args.long_reference == "skip":
            skip[(16, 18000, "reference")] = "skipped (--long-reference skip)"
        lengths, hiddens, base_length, base_hidden = (
            (100, 1000, 10000),
            (32, 64, 128, 256),
            1000,
            64,
        )
        scaling_skip = {(10000, 64): "skipped (memory: every stage's activations)"}

    print(f"# Solver speed, {machine()}\n", flush=True)
    table = training_step_table(configs, LEARNING_RULES, hidden, repeats, device, once, skip)
    print(f"\n## One training step, H={hidden}, 4 heads\n\n{table}\n", flush=True)
    table = scaling_table(
        16 if not args.quick else 2,
        lengths,
        hiddens,
        base_length,
        base_hidden,
        repeats,
        device,
        scaling_skip,
    )
    print(f"\n## Scaling, delta rule, 4 heads\n\n{table}\n")
    print(f"Finished: {machine()}")


if __name__ == "__main__":
    main()
