"""The training loop's bookkeeping, as two small objects the loop in
:meth:`skfwp.base.BaseSequenceEstimator._train` drives (modelled on scikit-learn's
``_update_no_improvement_count`` and skorch's checkpoint callbacks):

- :class:`ImprovementMonitor`: which epoch is best so far, how many epochs since one
  improved by more than ``tol``, the best weights when a validation split is watched;
- :class:`EpochRollback`: the weights at the start of the last two epochs, and the
  recovery from a step whose loss or gradient is not finite;
- :class:`WeightAverage`: the mean of the weights at the end of the last epochs
  (stochastic weight averaging).

Each holds torch state only (``state_dict`` copies); nothing here knows the estimator.
"""

from __future__ import annotations

import collections
import copy
import warnings

import torch

__all__ = ["EpochRollback", "ImprovementMonitor", "NonFiniteStep", "WeightAverage"]


class NonFiniteStep(ArithmeticError):
    """A training step produced a non-finite loss or gradient."""


class ImprovementMonitor:
    """Best epoch and patience over the monitored score.

    Without validation the score is the training loss (lower is better), averaged over
    the last ``window`` epochs (fewer in the first epochs): with augmented training
    cases the epoch's loss is noisy, and one lucky epoch would otherwise set a best
    that the next ``patience`` epochs must beat. With validation it is the validation
    score (higher is better), and an equal score is broken by the lower validation
    loss; ``window`` does not apply. An epoch improves when it beats the best by more
    than ``tol``.

    Parameters
    ----------
    tol : float
    patience : int
        Epochs without improvement after which :meth:`update` says stop.
    validation : bool
        Whether records carry ``val_loss`` and ``score_key``; the best weights are then
        kept (:attr:`best_state`), to be restored at the end.
    score_key : str
        The record's validation score entry, e.g. ``"val_accuracy"``.
    window : int, default=1
        Epochs whose training losses are averaged into the monitored value (1: the
        epoch's own loss).

    Examples
    --------
    >>> from torch import nn
    >>> monitor = ImprovementMonitor(tol=0.1, patience=2, validation=False, score_key="")
    >>> [monitor.update({"epoch": e, "loss": loss}, nn.Linear(1, 1))
    ...  for e, loss in enumerate([1.0, 0.5, 0.45, 0.44], start=1)]
    [False, False, False, True]
    >>> monitor.best_epoch, monitor.best_score
    (2, 0.5)
    >>> smooth = ImprovementMonitor(tol=0.1, patience=2, validation=False, score_key="", window=2)
    >>> [smooth.update({"epoch": e, "loss": loss}, nn.Linear(1, 1))
    ...  for e, loss in enumerate([1.0, 0.5, 0.45, 0.44], start=1)]
    [False, False, False, False]
    >>> smooth.best_epoch, smooth.best_score  # the mean of epochs 2 and 3
    (3, 0.475)
    >>> round(smooth.plateau_value, 3)  # what the scheduler watches: epochs 3 and 4
    0.445
    """

    def __init__(self, tol, patience, validation, score_key, window=1):
        self.tol = tol
        self.patience = patience
        self.validation = validation
        self.score_key = score_key
        self.best_key = None
        self.best_epoch = 0
        self.best_state = None
        self.stall = 0
        self.recent = collections.deque(maxlen=window)  # the last ``window`` training losses
        self.plateau_value = None

    def _improves(self, key):
        best = self.best_key
        if best is None:
            return True
        if not self.validation:
            return key[0] > best[0] + self.tol
        return key[0] > best[0] + self.tol or (key[0] >= best[0] and key[1] > best[1] + self.tol)

    def update(self, record, module):
        """Take an epoch's record, once per epoch; True when ``patience`` epochs passed
        without improvement. Sets :attr:`plateau_value`, what the learning-rate
        scheduler watches (lower is better): the validation loss, or without validation
        the mean training loss of the last ``window`` epochs."""
        self.recent.append(record["loss"])
        if self.validation:
            key = (record[self.score_key], -record["val_loss"])
            self.plateau_value = record["val_loss"]
        else:
            self.plateau_value = sum(self.recent) / len(self.recent)
            key = (-self.plateau_value,)
        if self._improves(key):
            self.best_key, self.best_epoch, self.stall = key, record["epoch"], 0
            if self.validation:
                self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.stall += 1
        return self.stall >= self.patience

    @property
    def best_score(self):
        """The best monitored score (the training loss without validation); nan before
        the first epoch ended."""
        if self.best_key is None:
            return float("nan")
        return float(self.best_key[0]) if self.validation else -float(self.best_key[0])


class EpochRollback:
    """Go back to the start of an epoch when one of its steps is not finite.

    :meth:`start_epoch` copies the module's and optimiser's state; :meth:`recover`,
    called with the :class:`NonFiniteStep` of a failed epoch, loads that copy (or the
    one from the epoch before, when the epoch began on weights whose outputs already
    overflow), divides the learning rate by 10 and warns, at most ``max_retries`` times
    per fit; after that it raises a ``FloatingPointError`` naming the epoch.

    Parameters
    ----------
    module, optimizer
        The module in training and its optimiser.
    max_retries : int
    """

    def __init__(self, module, optimizer, max_retries):
        self.module = module
        self.optimizer = optimizer
        self.max_retries = max_retries
        self.retries = 0
        self.good = self.older = None  # this epoch's start, and the one before

    def start_epoch(self):
        state = (self.module.state_dict(), self.optimizer.state_dict())
        self.older, self.good = self.good, copy.deepcopy(state)

    def _load(self, snapshot):
        self.module.load_state_dict(snapshot[0])
        self.optimizer.load_state_dict(snapshot[1])

    def recover(self, exc, epoch, outputs_finite):
        """Roll back the failed ``epoch`` and lower the learning rate.

        ``outputs_finite()`` says whether the loaded weights give finite outputs.
        """
        self.retries += 1
        if self.retries > self.max_retries:
            raise FloatingPointError(
                f"Training diverged at epoch {epoch}: {exc}, even after lowering the "
                f"learning rate {self.max_retries} times. Standardise X (e.g. with "
                "ChannelStandardScaler) or lower learning_rate_init."
            ) from None
        self._load(self.good)
        if self.older is not None and not outputs_finite():
            self._load(self.older)  # the last step of the epoch before overflowed
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.1
        warnings.warn(
            f"epoch {epoch}: {exc}; weights rolled back to the start of the epoch "
            f"and learning rate lowered to {self.optimizer.param_groups[0]['lr']:.2e}.",
            RuntimeWarning,
            stacklevel=4,
        )

    @property
    def fallbacks(self):
        """The snapshots to fall back on at the end of training, latest first."""
        return self.good, self.older


class WeightAverage:
    """The mean of a module's weights at the end of its last ``n_epochs`` epochs.

    Stochastic weight averaging (Izmailov et al. 2018, "Averaging Weights Leads to
    Wider Optima and Better Generalization") over a window that slides with training,
    since when training ends (patience, ``max_iter``, a callback) is not known ahead.
    Floating-point tensors are averaged; any other buffer keeps its latest value.
    Memory: ``n_epochs`` copies of the weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layer, average = nn.Linear(1, 1), WeightAverage(2)
    >>> for value in (1.0, 2.0, 4.0):
    ...     with torch.no_grad():
    ...         _ = layer.weight.fill_(value)
    ...     average.update(layer)
    >>> average.state()["weight"].item()  # the last two epochs
    3.0
    """

    def __init__(self, n_epochs):
        self.kept = collections.deque(maxlen=n_epochs)

    def update(self, module):
        self.kept.append({k: v.detach().clone() for k, v in module.state_dict().items()})

    def state(self):
        """The averaged ``state_dict`` (None before the first epoch ended)."""
        if not self.kept:
            return None
        latest = self.kept[-1]
        return {
            key: torch.stack([s[key] for s in self.kept]).mean(0) if t.is_floating_point() else t
            for key, t in latest.items()
        }
