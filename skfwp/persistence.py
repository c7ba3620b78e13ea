"""Save and load fitted skfwp classifiers without executing code from the file.

A model file is one ``torch.save`` archive holding only plain data: JSON strings for
the parameters and the fitted attributes, the module's ``state_dict`` tensors, the
format version, the skfwp and torch versions, and a SHA-256 digest of all of it.
``load`` reads it with ``torch.load(weights_only=True)`` (no pickle of arbitrary
objects), checks the version and the digest, rebuilds the module from the estimator's
own recipe and loads the weights strictly. Pickle and joblib keep working as usual.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import torch

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1
_FORMAT = "skfwp-model"
_FITTED = ("n_features_in_", "n_iter_", "best_epoch_", "loss_curve_", "history_", "stop_reason_")
_OPTIONAL_FITTED = ("validation_scores_", "best_validation_score_")


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
    """Write a fitted skfwp classifier to ``path`` (see the module docstring).

    Parameters
    ----------
    estimator : fitted skfwp classifier
        Its parameters must be plain data (numbers, strings, lists, tuples, dicts);
        ``callbacks`` are dropped with a warning.
    path : str or path-like

    Raises
    ------
    TypeError
        ``estimator`` is not a skfwp classifier, or holds what plain data cannot.

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
    >>> np.array_equal(skfwp.load(path).predict_proba(X), clf.predict_proba(X))
    True
    """
    from . import __version__
    from .base import BaseSequenceClassifier

    if not isinstance(estimator, BaseSequenceClassifier):
        raise TypeError(f"save expects a skfwp classifier, got {type(estimator).__name__}.")
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    params = estimator.get_params()
    if params.get("callbacks"):
        warnings.warn(
            "callbacks are code and are not saved; the loaded model has none.", stacklevel=2
        )
        params["callbacks"] = None
    params = {k: _encode(v, k) for k, v in params.items()}
    classes = estimator.classes_
    if classes.dtype.kind == "O":
        raise TypeError("classes_ of object dtype cannot be saved as plain data; use pickle.")
    fitted = {name: getattr(estimator, name) for name in _FITTED}
    fitted.update(
        {name: getattr(estimator, name) for name in _OPTIONAL_FITTED if hasattr(estimator, name)}
    )
    fitted["input_path_"] = estimator.input_path_.get_state()  # its own settings too
    meta = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "skfwp_version": __version__,
        "torch_version": str(torch.__version__),
        "estimator": type(estimator).__name__,
        "params": json.dumps(params),
        "classes": json.dumps({"values": classes.tolist(), "dtype": classes.dtype.str}),
        "fitted": json.dumps(fitted, default=float),
    }
    state = {k: v.detach().cpu() for k, v in estimator.module_.state_dict().items()}
    torch.save({**meta, "state_dict": state, "sha256": _digest(meta, state)}, path)


def load(path, device="cpu"):
    """Read a classifier written by :func:`save`; predictions equal the saved model's.

    Parameters
    ----------
    path : str or path-like
    device : str, default="cpu"
        Where the loaded module lives (sets ``device`` and ``device_``).

    Raises
    ------
    ValueError
        The file is truncated, not a skfwp model, from a newer format version, or its
        digest does not match its content (modified or corrupted).

    Returns
    -------
    estimator : fitted skfwp classifier
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

    :func:`save` shows a round trip.
    """
    from .base import _REGISTRY, _resolve_device
    from .path import InputPath

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path} is not a readable skfwp model file (truncated or not a model): {exc}"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a skfwp model file.")
    version = blob.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {version}, newer than this skfwp reads "
            f"({FORMAT_VERSION}); upgrade skfwp (file written by skfwp "
            f"{blob.get('skfwp_version')})."
        )
    meta = {k: v for k, v in blob.items() if k not in ("state_dict", "sha256")}
    state = blob.get("state_dict", {})
    if blob.get("sha256") != _digest(meta, state):
        raise ValueError(f"{path} failed its integrity check: it was modified or corrupted.")
    cls = _REGISTRY.get(blob["estimator"])
    if cls is None:
        raise ValueError(f"{path} holds an unknown estimator {blob['estimator']!r}.")
    params = {k: _decode(v) for k, v in json.loads(blob["params"]).items()}
    estimator = cls(**params)
    estimator.set_params(device=device)
    classes = json.loads(blob["classes"])
    estimator.classes_ = np.array(classes["values"], dtype=np.dtype(classes["dtype"]))
    fitted = json.loads(blob["fitted"])
    path_state = fitted.pop("input_path_")
    try:  # files before the path kept its settings: the estimator's, as then
        input_path = InputPath.from_state(
            path_state, defaults={n: getattr(estimator, n) for n in InputPath.PARAMS}
        )
    except ValueError as exc:
        raise ValueError(
            f"{path} was written by skfwp {blob.get('skfwp_version')}: {exc} Refit the "
            "model with this version and save it again."
        ) from None
    for name, value in fitted.items():
        setattr(estimator, name, value)
    estimator.input_path_ = input_path
    estimator.device_ = _resolve_device(device)
    module = estimator._new_module(0, input_path.n_path_channels_, len(estimator.classes_))
    module.load_state_dict(state, strict=True)
    estimator.module_ = module.to(estimator.device_).eval()
    return estimator
