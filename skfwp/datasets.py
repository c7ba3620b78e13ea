"""Data for examples, tests and benchmarks: shipped sktime datasets and generators.

Nothing here downloads: the named datasets are the ones sktime ships inside its
package, and the generators are deterministic given ``random_state``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["SKTIME_DATASETS", "load_sktime_dataset", "make_flip_flop"]

#: Datasets that sktime ships with its package (no download), by name.
SKTIME_DATASETS = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels")


def load_sktime_dataset(name, split="train"):
    """Load a dataset that sktime ships, on its own train/test split.

    Parameters
    ----------
    name : str
        One of :data:`SKTIME_DATASETS` (or any other dataset sktime ships).
    split : {"train", "test"}

    Returns
    -------
    X : ndarray of shape (n_cases, n_channels, n_timepoints), or list of
        ndarray of shape (n_channels, n_timepoints_i) when lengths differ
    y : ndarray of shape (n_cases,)
        String labels.
    """
    try:
        from sktime.datasets import load_from_tsfile
        from sktime.datasets._data_io import MODULE
    except ImportError as exc:  # pragma: no cover - exercised without sktime
        raise ImportError("load_sktime_dataset needs sktime: pip install 'skfwp[sktime]'") from exc

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    path = os.path.join(MODULE, "data", name, f"{name}_{split.upper()}.ts")
    if not os.path.exists(path):
        raise ValueError(f"sktime does not ship a dataset named {name!r} (looked for {path}).")
    X, y = load_from_tsfile(path, return_data_type="nested_univ")
    cases = [
        np.stack([np.asarray(X.iloc[i, j], dtype=float) for j in range(X.shape[1])])
        for i in range(X.shape[0])
    ]
    y = np.asarray(y)
    if len({c.shape for c in cases}) == 1:
        return np.stack(cases), y
    return cases, y


def make_flip_flop(
    n_cases,
    n_bits=2,
    n_timepoints=100,
    random_state=None,
    *,
    pulse_rate=0.06,
    pulse_width=3,
    continuous=False,
    noise=0.0,
):
    """The n-bit flip-flop memory task (Sussillo & Barak 2013; Kim et al. 2023).

    Each of the ``n_bits`` channels is silent (0) except for pulses of value ``±1``
    lasting ``pulse_width`` time points, whose onsets are a Poisson process of
    ``pulse_rate`` per time point, uniform over the onsets where a whole pulse fits. A
    later pulse overwrites an earlier one where they overlap. The label is the final
    state of the bits: per channel, the sign of its last pulse, so a model must
    remember each channel's last pulse until the end. Every channel of every case
    gets at least one pulse (one at a uniform onset where the Poisson draw gave none),
    so the label is always defined.

    Parameters
    ----------
    n_cases : int
    n_bits : int, default=2
        Number of channels (bits); there are ``2**n_bits`` classes.
    n_timepoints : int, default=100
    random_state : int, RandomState instance or None, default=None
        Makes the output deterministic.
    pulse_rate : float, default=0.06
        Expected pulse onsets per channel and time point (the paper's code: 12 pulses
        per trial shared by 2 channels over 100 bins).
    pulse_width : int, default=3
        Time points a pulse lasts (the paper's code: 3 bins).
    continuous : bool, default=False
        Draw each pulse's magnitude uniformly from ``[0.1, 1]`` (the label remains its
        sign): the continuous-amplitude variant.
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to every value.

    Returns
    -------
    X : ndarray of shape (n_cases, n_bits, n_timepoints)
    y : ndarray of shape (n_cases,)
        Strings of ``n_bits`` characters, ``"+"`` or ``"-"`` per channel (``"+-"``:
        channel 0 ended on +1, channel 1 on −1).

    Examples
    --------
    >>> from skfwp.datasets import make_flip_flop
    >>> X, y = make_flip_flop(3, n_bits=2, n_timepoints=20, random_state=0)
    >>> X.shape
    (3, 2, 20)
    >>> X[0, :, :12].astype(int)  # bit 0 ends on +1, bit 1 on -1 (then silence)
    array([[ 0,  0,  0,  1,  1,  1,  0,  1,  1,  1,  0,  0],
           [ 0,  0,  0,  0,  0,  0, -1, -1, -1,  0,  0,  0]])
    >>> y
    array(['+-', '+-', '--'], dtype='<U2')
    """
    from sklearn.utils import check_random_state

    if n_bits < 1 or n_cases < 1:
        raise ValueError(f"n_cases and n_bits must be >= 1, got {n_cases} and {n_bits}.")
    if not 1 <= pulse_width <= n_timepoints:
        raise ValueError(
            f"pulse_width={pulse_width} must be between 1 and n_timepoints={n_timepoints}."
        )
    if pulse_rate < 0 or noise < 0:
        raise ValueError("pulse_rate and noise must be non-negative.")
    rng = check_random_state(random_state)
    n_onsets = n_timepoints - pulse_width + 1  # onsets where a whole pulse fits
    X = np.zeros((n_cases, n_bits, n_timepoints))
    y = np.empty((n_cases, n_bits), dtype="<U1")
    for case in range(n_cases):
        for bit in range(n_bits):
            n_pulses = max(rng.poisson(pulse_rate * n_onsets), 1)
            onsets = np.sort(rng.randint(n_onsets, size=n_pulses))
            signs = rng.choice([-1.0, 1.0], size=n_pulses)
            sizes = rng.uniform(0.1, 1.0, size=n_pulses) if continuous else np.ones(n_pulses)
            for onset, value in zip(onsets, signs * sizes, strict=True):
                X[case, bit, onset : onset + pulse_width] = value
            y[case, bit] = "+" if signs[-1] > 0 else "-"
    if noise:
        X += noise * rng.normal(size=X.shape)
    return X, np.array(["".join(bits) for bits in y])
