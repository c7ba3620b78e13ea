"""Why the fast solver loops over steps instead of scanning (docs/solvers.md).

The fast solver's recurrence, per batch element and head, is ``P_{n+1} = P_n + Q_n
(B_n − V_n P_n)`` with ``d x r`` / ``r x d`` factors (r = 4 for rk4). It can run

- as a **loop**: two thin batched products per step (what skfwp does);
- as a **dense loop**: one ``d x d`` product per step, ``P_{n+1} = M_n P_n + N_n``,
  after materialising ``M_n = I − Q_n V_n`` and ``N_n = Q_n B_n`` for every step;
- as a **blocked scan** of the affine maps ``(M_n, N_n)``: prefix products inside
  blocks of ``k`` steps (vectorised over blocks), a loop over blocks, and a
  vectorised expansion to every state; sequential depth ``k + n / k`` instead of
  ``n``, at about three times the ``d x d`` products.

This script times the forward recurrence alone (no slow net, no backward) and checks
that all three give the same final state. Run
``OMP_NUM_THREADS=1 python benchmarks/scan_vs_loop.py``.
"""

from __future__ import annotations

import statistics
import time

import torch


def loop(P, Q, B, V):
    for n in range(len(Q)):
        P = torch.baddbmm(P, Q[n], torch.baddbmm(B[n], V[n], P, alpha=-1))
    return P


def transition_maps(Q, B, V):
    """``M_n = I − Q_n V_n`` and ``N_n = Q_n B_n`` for every step."""
    d = Q.shape[-2]
    return torch.eye(d) - Q @ V, Q @ B


def dense_loop(P, M, N):
    for n in range(len(M)):
        P = torch.baddbmm(N[n], M[n], P)
    return P


def blocked_scan(P, M, N, k):
    """Every state ``P_1 .. P_n`` (n divisible by k) through a two-level scan."""
    n, batch, d, _ = M.shape
    M, N = M.view(n // k, k, batch, d, d), N.view(n // k, k, batch, d, d)
    A, C = [M[:, 0]], [N[:, 0]]  # block prefixes: P_{j+1} = A_j P_start + C_j
    for j in range(1, k):
        A.append(M[:, j] @ A[-1])
        C.append(M[:, j] @ C[-1] + N[:, j])
    A, C = torch.stack(A, 1), torch.stack(C, 1)
    starts = []
    for b in range(n // k):
        starts.append(P)
        P = torch.baddbmm(C[b, -1], A[b, -1], P)
    return (A @ torch.stack(starts)[:, None] + C).view(n, batch, d, d)


def timed(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def compare(matrices, d, n, r=4, generator=None):
    """One table row: the three formulations on random factors, checked to agree."""
    P = 0.1 * torch.randn(matrices, d, d, generator=generator)
    Q = 0.05 * torch.randn(n, matrices, d, r, generator=generator)
    B, V = 0.05 * torch.randn(2, n, matrices, r, d, generator=generator)
    M, N = transition_maps(Q, B, V)
    final = loop(P, Q, B, V)
    torch.testing.assert_close(dense_loop(P, M, N), final, rtol=1e-4, atol=1e-5)
    scans = {}
    for k in (5, 10, 20, 25, 50):
        if n % k == 0:
            scan = blocked_scan(P, M, N, k)[-1]
            torch.testing.assert_close(scan, final, rtol=1e-4, atol=1e-5)
            scans[k] = timed(lambda k=k: blocked_scan(P, M, N, k))
    k = min(scans, key=scans.get)
    return (
        f"| {matrices} | {d} | {n} | {timed(lambda: loop(P, Q, B, V)):.0f} "
        f"| {timed(lambda: transition_maps(Q, B, V)):.0f} "
        f"| {timed(lambda: dense_loop(P, M, N)):.0f} | {scans[k]:.0f} (k={k}) |"
    )


def main():
    print(
        "| batch x heads | d | steps | loop (ms) | build M, N (ms) | dense loop (ms) "
        "| blocked scan, best k (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)  # a local generator: the global RNG stays
    for matrices, d, n in [(256, 16, 100), (64, 16, 1000), (256, 64, 100)]:
        print(compare(matrices, d, n, generator=generator), flush=True)


if __name__ == "__main__":
    main()
