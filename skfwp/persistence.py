"""Save and load fitted skfwp estimators without executing code from the file.

A model file is one ``torch.save`` archive holding only plain data: JSON strings for
the parameters and the fitted attributes, the module's ``state_dict`` tensors, the
format version, the skfwp and torch versions, and a SHA-256 digest of all of it.
``load`` reads it with ``torch.load(weights_only=True)`` (no pickle of arbitrary
objects), checks the version and the digest, rebuilds the module from the estimator's
own recipe and loads the weights strictly. Pickle and joblib keep working as usual.

The digest detects accidental corruption; it is no signature (anyone can recompute
it), so ``load`` also treats a file as untrusted input: it bounds every allocation by
the tensors the file holds (no overlapping or expanded storages; declared sizes and
parameters checked against those tensors on the ``meta`` device before anything is
built) and refuses whatever else is malformed with a ``ValueError``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import warnings

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ._validation import resolve_device
from ._version import __version__
from .path import InputPath
from .registry import estimator_class

__all__ = ["FORMAT_VERSION", "load", "save"]

#: 2: every module's final linear layer is ``output`` (format 1: ``classifier``, and
#: ``readout`` in the Neural CDE); ``load`` renames the tensors of format-1 files.
FORMAT_VERSION = 2
_FORMAT = "skfwp-model"
#: Module names of the final linear layer in format-1 files.
_V1_OUTPUT_NAMES = ("classifier", "readout")
#: Largest ``classes_`` array a file may declare (its string width times its length).
_MAX_CLASSES_BYTES = 1 << 24
_CLASS_KINDS = "biufU"  # bool, int, unsigned, float, str; "O" only for str values
_TENSOR_DTYPES = {
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
}


class _Refused(ValueError):
    """``load`` refuses the file (the message names it and says why)."""


def _encode(value, name):
    """JSON-ready form of a parameter value: tuples and dicts (any keys) are tagged."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, name) for v in value]}
    if isinstance(value, list):
        return [_encode(v, name) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, name), _encode(v, name)] for k, v in value.items()]}
    raise TypeError(
        f"Parameter {name}={value!r} cannot be saved as plain data; set it to a plain "
        "value (number, string, list, dict) before saving, or use pickle."
    )


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {_decode(k): _decode(v) for k, v in value["__dict__"]}
    return value


def _digest(meta, state):
    h = hashlib.sha256()
    for key in sorted(meta):
        h.update(key.encode())
        h.update(str(meta[key]).encode())
    for key in sorted(state):
        h.update(key.encode())
        tensor = state[key].detach().cpu().contiguous()
        h.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def save(estimator, path):
    """Write a fitted skfwp estimator to ``path`` (see the module docstring).

    Parameters
    ----------
    estimator : fitted skfwp classifier or regressor
        Its parameters must be plain data (numbers, strings, lists, tuples, dicts);
        ``callbacks`` are dropped with a warning.
    path : str or path-like

    Raises
    ------
    TypeError
        ``estimator`` is not a skfwp estimator, or holds what plain data cannot.
    OSError
        ``path`` is a folder, its folder does not exist, or it cannot be written
        (``IsADirectoryError``, ``FileNotFoundError``, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skfwp
    >>> X, y = np.random.default_rng(0).normal(size=(8, 1, 6)), np.arange(8) % 2
    >>> clf = skfwp.GatedNODEClassifier(hidden_size=2, flow_layers=(4,), max_iter=1,
    ...                                 random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
    >>> clf.save(path)  # the same as skfwp.persistence.save(clf, path)
    >>> loaded = skfwp.load(path, expected_class=skfwp.GatedNODEClassifier)
    >>> np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    True
    """
    if not getattr(type(estimator), "_skfwp_estimator", False):
        raise TypeError(
            f"save expects a skfwp classifier or regressor, got {type(estimator).__name__}."
        )
    classes, fitted, path_state, state = estimator._export_fitted()  # checks it is fitted
    params = estimator.get_params()
    if params.get("callbacks"):
        warnings.warn(
            "callbacks are code and are not saved; the loaded model has none.", stacklevel=2
        )
        params["callbacks"] = None
    params = {k: _encode(v, k) for k, v in params.items()}
    if (
        classes is not None
        and classes.dtype.kind == "O"
        and not all(isinstance(c, str) for c in classes)
    ):
        raise TypeError(
            "classes_ of object dtype other than strings cannot be saved as plain data; use pickle."
        )
    fitted = {**fitted, "input_path_": path_state}  # the path's own settings too
    meta = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "skfwp_version": __version__,
        "torch_version": str(torch.__version__),
        "estimator": type(estimator).__name__,
        "params": json.dumps(params),
        "classes": json.dumps(
            None if classes is None else {"values": classes.tolist(), "dtype": classes.dtype.str}
        ),
        "fitted": json.dumps(fitted, default=float),
    }
    _check_writable(path)
    try:
        torch.save({**meta, "state_dict": state, "sha256": _digest(meta, state)}, path)
    except RuntimeError as exc:  # torch's writer reports OS errors as RuntimeError
        raise OSError(f"could not write the model file {path}: {exc}") from None


def _check_writable(path):
    """The OSError a user expects for a path that names a folder or lies in a missing one."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return  # a file object: torch.save writes to it
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "cannot save a model onto a folder", path)
    folder = os.path.dirname(path) or os.curdir
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "no folder to save the model in", folder)


def load(path, device="cpu", *, expected_class=None):
    """Read an estimator written by :func:`save`; predictions equal the saved model's.

    The file is treated as untrusted input: nothing in it is executed, every
    allocation is bounded by the tensors it holds, and anything malformed is refused
    with a ``ValueError``. Its SHA-256 digest detects accidental corruption, not a
    deliberately modified file whose digest was recomputed (see the docs'
    Persistence page).

    Parameters
    ----------
    path : str or path-like
    device : str, default="cpu"
        Where the loaded module lives (sets ``device`` and ``device_``).
    expected_class : type or tuple of types, optional
        The skfwp estimator class(es) the file must hold (subclasses count); a file
        holding another class is refused before anything is built.

    Raises
    ------
    ValueError
        The file is truncated, not a skfwp model, from a newer format version, its
        digest does not match its content (modified or corrupted), it holds another
        class than ``expected_class``, or its content is inconsistent (parameters,
        declared sizes and tensors that do not fit together).
    FileNotFoundError
        No file at ``path``.

    Returns
    -------
    estimator : fitted skfwp classifier or regressor
        The saved class, parameters, fitted attributes and weights.

    Examples
    --------
    >>> import os, tempfile
    >>> import skfwp
    >>> path = os.path.join(tempfile.mkdtemp(), "not-a-model.pt")
    >>> _ = open(path, "wb").write(b"not a model")
    >>> skfwp.load(path)
    Traceback (most recent call last):
    ...
    ValueError: ... is not a readable skfwp model file (truncated or not a model): ...

    :func:`save` shows a round trip, with ``expected_class``.
    """
    expected = expected_class if isinstance(expected_class, tuple) else (expected_class,)
    if expected_class is not None and not all(
        isinstance(c, type) and getattr(c, "_skfwp_estimator", False) for c in expected
    ):
        raise TypeError(
            f"expected_class must be a skfwp estimator class or a tuple of them, got "
            f"{expected_class!r}."
        )
    resolve_device(device)  # a bad device is named before the file is read
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:
        raise ValueError(
            f"{path} is not a readable skfwp model file (truncated or not a model): {exc}"
        ) from None
    try:
        return _rebuild(blob, path, device, expected_class and expected)
    except _Refused:
        raise
    except Exception as exc:  # anything a crafted file provokes is a refusal too
        raise ValueError(
            f"{path} is not a valid skfwp model file: {type(exc).__name__}: {exc}"
        ) from None


def _refuse(path, why):
    raise _Refused(f"{path} {why}")


def _is_int(value, low):
    return type(value) is int and value >= low


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive(value):
    return type(value) in (int, float) and 0 < value < float("inf")


def _check_tensors(path, state):
    """Every tensor plain, compact and inside its own storage: memory is what the file holds."""
    if not isinstance(state, dict):
        _refuse(path, "has no state_dict of tensors.")
    storages, total = {}, 0
    for key, t in state.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            _refuse(path, f"holds a state_dict entry {key!r} that is not a named tensor.")
        if t.layout != torch.strided or t.dtype not in _TENSOR_DTYPES:
            _refuse(path, f"holds tensor {key!r} of an unsupported kind ({t.layout}, {t.dtype}).")
        storage = t.untyped_storage()
        size = t.numel() * t.element_size()
        if not t.is_contiguous() or t.storage_offset() * t.element_size() + size > storage.nbytes():
            _refuse(
                path,
                f"holds tensor {key!r} that is not a compact view of its storage (shape "
                f"{tuple(t.shape)}, strides {t.stride()}): refused, as expanding it could "
                "take far more memory than the file holds.",
            )
        storages[storage.data_ptr()] = storage.nbytes()
        total += size
    if total > sum(storages.values()):
        _refuse(path, "holds tensors that share storage; a model file's tensors do not.")
    return total


class _ShapesOnMeta(TorchFunctionMode):
    """Tensors made from a shape go to the ``meta`` device (no memory); tensors made
    from data (bounded by the file's size) are made as usual."""

    _FROM_SHAPE = {
        torch.empty,
        torch.empty_strided,
        torch.zeros,
        torch.ones,
        torch.full,
        torch.eye,
        torch.arange,
        torch.linspace,
        torch.rand,
        torch.randn,
        torch.randint,
        torch.randperm,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self._FROM_SHAPE and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _classes(path, blob):
    classes = json.loads(blob["classes"])
    values, dtype = classes["values"], np.dtype(classes["dtype"])
    if not isinstance(values, list):
        _refuse(path, "declares classes that are not a list of labels.")
    if dtype.kind not in _CLASS_KINDS + "O":
        _refuse(path, f"declares classes of an unsupported dtype {dtype.str!r}.")
    if dtype.kind == "O" and not all(isinstance(v, str) for v in values):
        _refuse(path, "declares object-dtype classes that are not all strings.")
    if dtype.itemsize * len(values) > _MAX_CLASSES_BYTES:
        _refuse(
            path,
            f"declares a classes array of {dtype.itemsize * len(values)} bytes (dtype "
            f"{dtype.str!r}), more than the {_MAX_CLASSES_BYTES} a model file may.",
        )
    out = np.array(values, dtype=dtype)
    if out.ndim != 1 or len(out) < 2 or not np.array_equal(np.unique(out), out):
        _refuse(path, "declares classes that are not 2 or more sorted, distinct labels.")
    return out


def _targets(path, cls, blob, fitted):
    """``(classes or None, n_outputs)``: a classifier's labels, or a regressor's checked
    number of targets and standardisation (``n_outputs_``, ``target_mean_``, ``target_scale_``)."""
    if cls._task == "classification":
        classes = _classes(path, blob)
        return classes, len(classes)
    if json.loads(blob["classes"]) is not None:
        _refuse(path, f"declares classes, but a {cls.__name__} has none.")
    n = fitted.get("n_outputs_")
    if not _is_int(n, 1):
        _refuse(path, f"declares n_outputs_={n!r}, not a positive integer.")
    for name, low in (("target_mean_", -math.inf), ("target_scale_", 0.0)):
        values = fitted.get(name)
        if not (
            isinstance(values, list)
            and len(values) == n
            and all(_is_number(v) and low < v < math.inf for v in values)
        ):
            _refuse(path, f"declares {name} that are not {n} finite numbers above {low}.")
    return None, n


def _logsig_channels(k, window, depth):
    """Channels of a path of ``k`` channels after log-signature windows of ``depth``:
    the Lyndon words of length 1, 2 and 3 on ``k`` letters (no windows: ``k``).

    ``pysiglib.log_sig_length`` gives the same numbers (tested); here the sizes come
    from an untrusted file, so they are counted with Python integers before anything
    is allocated or passed to a compiled library."""
    if window is None:
        return k
    return k + (depth >= 2) * k * (k - 1) // 2 + (depth >= 3) * (k**3 - k) // 3


def _check_fitted(path, cls, input_path, fitted, path_fitted):
    """The declared sizes agree with each other and with the input path's settings."""
    required = set(cls._plain_fitted)
    if not required <= set(fitted) <= required | set(cls._optional_plain_fitted):
        _refuse(path, f"holds fitted attributes {sorted(fitted)}, not {sorted(required)}.")
    n_in = fitted["n_features_in_"]
    if not _is_int(n_in, 1) or path_fitted.get("n_channels_in_") != n_in:
        _refuse(path, "declares an invalid or inconsistent number of input channels.")
    tc = input_path.time_channel
    if tc is not None and not (n_in >= 2 and -n_in <= tc < n_in):
        _refuse(path, f"declares time_channel={tc} for {n_in} input channels.")
    n_data = n_in - (tc is not None)
    k_observed = 1 + n_data * (2 if input_path.observation_intensity else 1)
    k = _logsig_channels(k_observed, input_path.logsig_window, input_path.logsig_depth)
    if path_fitted.get("n_path_channels_") != k:
        _refuse(
            path,
            f"declares n_path_channels_={path_fitted.get('n_path_channels_')!r}; its "
            f"input path's settings and {n_in} input channels make {k}.",
        )
    rms = path_fitted.get("increment_rms_")
    if not (isinstance(rms, list) and len(rms) == k and all(_is_positive(r) for r in rms)):
        _refuse(path, f"declares increment_rms_ that are not {k} positive numbers.")
    scales = path_fitted.get("logsig_scale_")
    n_terms = k - k_observed
    if not (
        isinstance(scales, list) and len(scales) == n_terms and all(_is_positive(r) for r in scales)
    ):
        _refuse(path, f"declares logsig_scale_ that are not {n_terms} positive numbers.")
    for name in ("time_scale_", "count_scale_"):
        if not _is_positive(path_fitted.get(name)):
            _refuse(path, f"declares {name}={path_fitted.get(name)!r}, not a positive number.")
    if not all(_is_int(fitted[n], 0) for n in ("n_iter_", "best_epoch_")) or not all(
        isinstance(fitted[n], list) for n in ("loss_curve_", "history_")
    ):
        _refuse(path, "declares fitted attributes of the wrong types.")


def _renamed_v1(state):
    """A format-1 ``state_dict`` with its final layer's tensors under ``output``."""
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2] in _V1_OUTPUT_NAMES:
            parts[-2] = "output"
        renamed[".".join(parts)] = tensor
    return renamed


def _check_module_shapes(path, estimator, n_path_channels, n_outputs, state, file_bytes):
    """Build the module on ``meta`` and compare it with the file's tensors."""
    with _ShapesOnMeta():
        module = estimator._new_module(0, n_path_channels, n_outputs)
    expected = module.state_dict()
    if set(expected) != set(state):
        extra, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
        _refuse(path, f"does not fit its parameters: extra tensors {extra}, missing {missing}.")
    for key, t in expected.items():
        if t.shape != state[key].shape or t.dtype != state[key].dtype:
            _refuse(
                path,
                f"does not fit its parameters: tensor {key!r} is {tuple(state[key].shape)} "
                f"{state[key].dtype}, the model's is {tuple(t.shape)} {t.dtype}.",
            )
    tensors = [*module.parameters(), *module.buffers()]
    needed = sum(t.numel() * t.element_size() for t in tensors)
    if needed > file_bytes + (1 << 20):
        _refuse(path, f"declares a model of {needed} bytes, far more than the file's tensors.")


def _rebuild(blob, path, device, expected):
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        _refuse(path, "is not a skfwp model file.")
    version = blob.get("format_version")
    if type(version) is not int or version < 1:
        _refuse(path, f"has no valid format version ({version!r}).")
    if version > FORMAT_VERSION:
        _refuse(
            path,
            f"has format version {version}, newer than this skfwp reads "
            f"({FORMAT_VERSION}); upgrade skfwp (file written by skfwp "
            f"{blob.get('skfwp_version')}).",
        )
    for key in ("estimator", "params", "classes", "fitted", "sha256"):
        if not isinstance(blob.get(key), str):
            _refuse(path, f"lacks its {key!r} entry, or it is not a string.")
    meta = {k: v for k, v in blob.items() if k not in ("state_dict", "sha256")}
    state = blob.get("state_dict")
    file_bytes = _check_tensors(path, state)  # before the digest reads them
    if blob["sha256"] != _digest(meta, state):
        _refuse(path, "failed its integrity check: it was modified or corrupted.")
    if version == 1:
        state = _renamed_v1(state)
    cls = estimator_class(blob["estimator"])
    if cls is None:
        _refuse(path, f"holds an unknown estimator {blob['estimator']!r}.")
    if expected and not issubclass(cls, expected):
        names = " or ".join(c.__name__ for c in expected)
        _refuse(path, f"holds a {cls.__name__}, not the expected {names}.")
    params = json.loads(blob["params"])
    names = set(cls().get_params())
    if not isinstance(params, dict) or not set(params) <= names:
        _refuse(path, f"does not hold the parameters of {cls.__name__}.")
    # A parameter added after the file was written takes the value that reproduces the
    # model of its day (``_saved_before``, those the class takes), not today's default.
    before = {k: v for k, v in getattr(cls, "_saved_before", {}).items() if k in names}
    params = {**before, **{k: _decode(v) for k, v in params.items()}}
    estimator = cls(**params)
    estimator.set_params(device=device)
    try:
        estimator._check_all_params()
    except ValueError as exc:
        _refuse(path, f"holds invalid parameters: {exc}")
    fitted = json.loads(blob["fitted"])
    if not isinstance(fitted, dict) or not isinstance(fitted.get("input_path_"), dict):
        _refuse(path, "lacks its fitted input path.")
    classes, n_outputs = _targets(path, cls, blob, fitted)
    path_fitted = fitted.pop("input_path_")
    known = set(InputPath.PARAMS) | set(InputPath.FITTED)
    if not set(path_fitted) <= known:
        _refuse(path, f"declares input path attributes {sorted(set(path_fitted) - known)}.")
    try:  # files before the path kept its settings: the estimator's, as then
        input_path = InputPath.from_state(
            path_fitted, defaults={n: getattr(estimator, n) for n in InputPath.PARAMS}
        )
    except ValueError as exc:
        _refuse(
            path,
            f"was written by skfwp {blob.get('skfwp_version')}: {exc} Refit the model with "
            "this version and save it again.",
        )
    try:
        input_path._check_settings()
    except (ValueError, TypeError) as exc:
        _refuse(path, f"declares an invalid input path setting: {exc}")
    _check_fitted(path, cls, input_path, fitted, input_path.get_state())
    n_path = input_path.n_path_channels_
    estimator.input_path_ = input_path  # _build_module may read its scales, as in fit
    _check_module_shapes(path, estimator, n_path, n_outputs, state, file_bytes)
    return estimator._import_fitted(classes, fitted, input_path, state, device)
