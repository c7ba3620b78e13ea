"""Training-step time and memory of the solver paths (issues 7 and 17).

One training step is a forward pass, a cross-entropy loss and a backward pass, on
random series (3 channels, Hermite path, rk4 with one step per observation, float32).
Three approaches, all measured in this one process:

- **reference**: the generic path with ``adjoint=True``; the slow net runs at every
  solver stage and the adjoint ODE is solved backwards (the FWP paper's setting);
- **generic**: the generic path, back-propagating through torchdiffeq's steps;
- **fast**: :mod:`skfwp.nn.fast_solver`.

A third table (``--models``) puts the gated nODE, the Neural CDE and N-CODE (closed
loop) at their default layer sizes through the same step, generic against fast
(:func:`skfwp.nn.fast_solver.integrate_fixed_grid`), B=64, T=100, H=32 and 64.

Time is the median over up to ``--repeats`` steps after a warm-up step (fewer when
a step is long: as many as fit in a minute; none, then the warm-up step's time, when
it takes over a minute). Memory is the peak resident set size of the process during
the warm-up step (Linux: the ``VmHWM`` high-water mark, reset before the step) and
its increase over the resident size before it; on CUDA, ``max_memory_allocated``.
Rows that would take too long or too much memory are skipped, and the table says so.

Run from the repository root, with this checkout importable::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/solver_speed.py [--quick]
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
from skfwp.nn.delta import LEARNING_RULES, ContinuousFWP
from skfwp.nn.gated import GatedNODE
from skfwp.nn.ncde import NeuralCDE
from skfwp.nn.ncode import NCODE
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


#: The other models, at their estimators' default layer sizes: name -> builder.
#: The gated nODE twice: F of 64 units (the module's and the regressor's default)
#: and of 128 (``GatedNODEClassifier``'s).
MODELS = {
    "gated nODE": lambda k, hidden: GatedNODE(k, 5, hidden_size=hidden),
    "gated nODE, F 128": lambda k, hidden: GatedNODE(k, 5, hidden_size=hidden, flow_layers=(128,)),
    "Neural CDE": lambda k, hidden: NeuralCDE(k, 5, hidden_size=hidden),
    "N-CODE": lambda k, hidden: NCODE(k, 5, hidden_size=hidden),
}


def measure(path, rule, hidden, approach, repeats, device, budget=60.0):
    """Seconds per step, peak memory and its increase (MB), and the steps timed.

    The first step is measured for memory; the median of up to ``repeats`` more steps,
    as many as fit in ``budget`` seconds, for time (the first step's time if none fit).
    ``rule``: a learning rule of the FWP, or a name in :data:`MODELS`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if rule in MODELS:
            module = MODELS[rule](path.n_channels, hidden)
        else:
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
    n = min(repeats, int(budget // first))
    seconds = statistics.median(step() for _ in range(n)) if n else first
    return seconds, memory.peak, memory.increase, n


# -- tables ---------------------------------------------------------------------------


def _fmt(seconds):
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def _timed(n):
    return f"median of {n} after a warm-up" if n else "one step, no warm-up"


def training_step_table(configs, rules, hidden, repeats, device, skip):
    """Table 1: every approach per (batch, length) and rule, ratios to the reference."""
    lines = [
        "| B | T | rule | approach | s / step | peak RSS (MB) | Δ RSS (MB) | speed-up vs "
        "reference | timing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, length in configs:
        path = make_path(batch, length, device)
        for rule in rules:
            results = {}
            for approach in APPROACHES:
                if (batch, length, rule, approach) in skip:
                    results[approach] = skip[(batch, length, rule, approach)]
                    continue
                results[approach] = measure(path, rule, hidden, approach, repeats, device)
                print(f"  measured B={batch} T={length} {rule} {approach}", flush=True)
            ref = results["reference"]
            for approach, result in results.items():
                row = f"| {batch} | {length} | {rule} | {approach} |"
                if isinstance(result, str):  # skipped, with the reason
                    lines.append(f"{row} – | – | – | – | {result} |")
                    continue
                seconds, peak, increase, n = result
                ratio = "–" if isinstance(ref, str) else f"{ref[0] / seconds:.1f}x"
                lines.append(
                    f"{row} {_fmt(seconds)} | {peak:.0f} | {increase:.0f} | {ratio} | {_timed(n)} |"
                )
    return "\n".join(lines)


def scaling_table(batch, configs, repeats, device, skip):
    """Table 2: delta rule, fast vs generic back-propagation as T and H grow."""
    lines = [
        "| B | T | H | generic s / step | fast s / step | generic / fast | generic peak RSS "
        "(MB) | fast peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for length, hidden in configs:
        path = make_path(batch, length, device)
        fast, fast_peak, _, _ = measure(path, "delta", hidden, "fast", repeats, device)
        if (length, hidden) in skip:
            generic, ratio, generic_peak = skip[(length, hidden)], "–", "–"
        else:
            seconds, peak, _, _ = measure(path, "delta", hidden, "generic", repeats, device)
            generic, ratio, generic_peak = _fmt(seconds), f"{seconds / fast:.1f}x", f"{peak:.0f}"
        lines.append(
            f"| {batch} | {length} | {hidden} | {generic} | {_fmt(fast)} | {ratio} "
            f"| {generic_peak} | {fast_peak:.0f} |"
        )
        print(f"  measured scaling T={length} H={hidden}", flush=True)
    return "\n".join(lines)


def models_table(configs, repeats, device):
    """Table 3: the gated nODE, Neural CDE and N-CODE, generic vs fast, per (B, T, H)."""
    lines = [
        "| model | B | T | H | generic s / step | fast s / step | generic / fast | generic "
        "peak RSS (MB) | fast peak RSS (MB) | timing (fast) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, length, hidden in configs:
        path = make_path(batch, length, device)
        for name in MODELS:
            generic, generic_peak, _, _ = measure(path, name, hidden, "generic", repeats, device)
            fast, fast_peak, _, n = measure(path, name, hidden, "fast", repeats, device)
            lines.append(
                f"| {name} | {batch} | {length} | {hidden} | {_fmt(generic)} | {_fmt(fast)} "
                f"| {generic / fast:.1f}x | {generic_peak:.0f} | {fast_peak:.0f} | {_timed(n)} |"
            )
            print(f"  measured {name} B={batch} T={length} H={hidden}", flush=True)
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
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per row (at most)")
    parser.add_argument(
        "--long-reference",
        choices=("delta", "all", "skip"),
        default="delta",
        help="rules whose reference row runs (once) at T=18000",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        metavar="BxT",
        help="only these training-step rows, e.g. 64x100 (and no scaling table)",
    )
    parser.add_argument(
        "--models",
        action="store_true",
        help="only the table of the gated nODE, Neural CDE and N-CODE",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rules = LEARNING_RULES
    if args.quick:
        hidden, batch, repeats = 8, 2, 2
        configs = [(4, 12), (2, 30)]
        skip = {(2, 30, rule, "generic"): "skipped (--quick)" for rule in rules}
        scaling = [(12, 8), (24, 8), (12, 16)]
        scaling_skip = {(24, 8): "skipped (--quick)"}
    else:
        hidden, batch, repeats = 64, 16, args.repeats
        configs = [(64, 100), (16, 1000), (16, 18000)]
        skip = {
            (16, 18000, rule, "generic"): "skipped: back-propagating through 72,000 solver "
            "stages holds every stage's activations (tens of GB; 1.3 GB at T=1000)"
            for rule in rules
        }
        long_reference = {"delta": ("delta",), "all": rules, "skip": ()}[args.long_reference]
        for rule in rules:
            if rule not in long_reference:
                skip[(16, 18000, rule, "reference")] = (
                    "skipped for time (about 15 min a step; see the delta row)"
                )
        scaling = [(100, 64), (1000, 64), (10000, 64), (1000, 32), (1000, 128), (1000, 256)]
        scaling_skip = {(10000, 64): "skipped (memory: about 13 GB, from 1.3 GB at T=1000)"}

    model_configs = [(2, 12, 8)] if args.quick else [(64, 100, 32), (64, 100, 64)]
    if args.configs:
        configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.configs]
        scaling = []
    print(f"# Solver speed\n\n{machine()}\n", flush=True)
    if args.models:
        table = models_table(model_configs, repeats, device)
        print(f"\n## One training step, other models, rk4\n\n{table}\n")
        print(f"Finished: {machine()}")
        return
    table = training_step_table(configs, rules, hidden, repeats, device, skip)
    print(f"\n## One training step, H={hidden}, 4 heads\n\n{table}\n", flush=True)
    if scaling:
        table = scaling_table(batch, scaling, repeats, device, scaling_skip)
        print(f"\n## Scaling, delta rule, B={batch}, 4 heads\n\n{table}\n")
    table = models_table(model_configs, repeats, device)
    print(f"\n## One training step, other models, rk4\n\n{table}\n")
    print(f"Finished: {machine()}")


if __name__ == "__main__":
    main()
