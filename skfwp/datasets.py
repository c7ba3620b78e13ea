"""Data for examples, tests and benchmarks: shipped sktime datasets and generators.

Nothing here downloads: the named datasets are the ones sktime ships inside its
package, and the generators are deterministic given ``random_state``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["SKTIME_DATASETS", "load_sktime_dataset"]

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
