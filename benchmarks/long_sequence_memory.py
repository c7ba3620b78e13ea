"""Peak memory of one fast-path training step on long sequences, each in a fresh process.

``solver_speed.py`` measures every row in one long-lived process, whose allocator
keeps what earlier rows freed: its T=18,000 rows read 2.1-2.2 GB where a process that
runs only that step peaks lower. What a user sees who fits such data is the fresh
process, so this script starts one per rule (``multiprocessing`` spawn), runs one
training step (forward, cross-entropy, backward; rk4, one step per observation,
float32, H=64, 4 heads) and reports the child's peak resident set size
(``ru_maxrss``) beside its resident size before the step. The gated nODE, the Neural
CDE and N-CODE (closed loop) follow, at their estimators' default sizes (H=32), on
their fast paths (:func:`skfwp.nn.fast_solver.integrate_fixed_grid`).

Run from the repository root: ``OMP_NUM_THREADS=1 PYTHONPATH=. python
benchmarks/long_sequence_memory.py [--length 18000] [--batch 16]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time


def _one_step(batch, length, rule, queue):
    import torch

    from benchmarks.solver_speed import MODELS, make_path, training_step
    from skfwp.nn.delta import ContinuousFWP

    torch.set_num_threads(1)
    path = make_path(batch, length, torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if rule in MODELS:
            module = MODELS[rule](path.n_channels, 32)
        else:
            module = ContinuousFWP(path.n_channels, 5, 64, n_heads=4, learning_rule=rule)
    target = torch.arange(batch) % 5
    with open("/proc/self/status") as f:
        before = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    start = time.perf_counter()
    training_step(module, path, target, {"solver_backend": "fast", "adjoint": False})
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    queue.put((before / 1024, peak / 1024, seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=18_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["delta", "hebb", "oja", "gated nODE", "Neural CDE", "N-CODE"],
    )
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} logical CPUs, one torch thread\n")
    print("| B | T | model | RSS before the step (MB) | peak RSS (MB) | step s |")
    print("|---|---|---|---|---|---|")
    for rule in args.models:
        queue = ctx.Queue()
        proc = ctx.Process(target=_one_step, args=(args.batch, args.length, rule, queue))
        proc.start()
        before, peak, seconds = queue.get()
        proc.join()
        print(
            f"| {args.batch} | {args.length:,} | {rule} | {before:.0f} | {peak:.0f} "
            f"| {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
