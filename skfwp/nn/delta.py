"""Continuous-time Fast Weight Programmers (Irie, Faccio & Schmidhuber, NeurIPS 2022).

A slow net reads the input path ``X(s)`` and, through a learning rule, continuously
programs the fast weights ``W(s)``: one ``d x d`` matrix per head, ``d = H / n_heads``.

Slow net, per head (``u`` is ``dX/ds`` for ``variant="cde"``, ``X`` otherwise)::

    a      = LayerNorm(W_in u + b_in)                     (H,)
    k, b~  = split(W_kb a);  k = softmax(k),  beta = sigmoid(b~)
    v      = tanh(W_v X + b_v)                            (d,) per head

Learning rules (the vector field ``dW/ds``)::

    hebb :  beta v kᵀ
    oja  :  beta v (k − Wᵀ v)ᵀ
    delta:  beta (v − W k) kᵀ          post_tanh: beta tanh(v~ − W k) kᵀ, v~ = W_v X + b_v

These are MODELS.md's forms. The paper's released code writes two rules differently;
they are offered under their own names (same slow net otherwise)::

    hebb_released:  b~ v~ kᵀ                 the raw rate b~ (no sigmoid), no tanh on v
    oja_released :  beta v softmax(k~ − Wᵀ v)ᵀ    the correction inside the key softmax

(``k~`` the keys before their softmax). ``hebb_released`` is still affine in ``W``
(it does not depend on it) and runs on the fast solver; ``oja_released`` is not.

``variant="recurrent"`` adds the fast net's output ``y = W q`` to the slow net's
input: ``a = LayerNorm(W_in u + R y + b_in)``. Design choice: the query ``q`` there
(and at readout) comes from ``a0 = LayerNorm(W_in u + b_in)``, which keeps ``q``
from depending on itself.

Initial state: one Hebbian step from the first observation, ``W(0) = beta v kᵀ``
(with ``initial_map``, from ``p = L X(0) + b_L``, ``L`` learned, in place of both
slow-net inputs: the released EigenWorms model).

The derivative (design choice): the slow net reads ``u = c ⊙ dX/ds``, ``s`` the
path's index parameter, with a fixed per-channel scale ``c`` (``derivative_scale``).
The classifier sets ``c`` to one over the RMS of each channel's increments in the
training data, so that ``u`` is of unit size whatever the sampling density: a smooth
series of a few hundred points has ``|dX/ds|`` far below ``|b_in|``, and with
``c = 1`` (the reference code) its keys and rates barely depend on the data.

Readout at each case's own final knot ``T_i`` (``readout``)::

    "query" :  q = softmax(W_q a0(T_i));  y = concat_heads(W(T_i) q)     (H,)
    "matrix":  y = vec(W(T_i))                                          (h d²,)
    z = W_o y;  z = z + FF(LayerNorm(z));  outputs = W_c z

``"query"`` is MODELS.md's read-out: the fast net answers one query, computed from
the last window's derivative. ``"matrix"`` (design choice, the classifier's default)
reads every entry of the fast weights through ``W_o``: the same as answering the
``d`` one-hot queries and mixing the answers linearly, so no query has to be learned
from the path's last stretch. It measured better on the development data sets
(docs/models/continuous_delta.md).

Solvers (``solver_backend``): two fast paths, both for fixed-step methods. For the
``"cde"`` and ``"ode"`` variants without ``post_tanh`` and with a rule of
:data:`AFFINE_RULES`, ``k``, ``v`` and ``beta`` depend on the input path only, so
``dW/ds`` is affine in ``W`` and every rule is one rank-one form
(:func:`rank_one_form`) that :func:`skfwp.nn.fast_solver.integrate_rank_one` integrates
(hand-written backward). Every other setting (``"oja_released"``, ``post_tanh``, the
recurrent variant) goes through :func:`skfwp.nn.fast_solver.integrate_fixed_grid`: what
depends on the input path alone (``k, v, beta``; for the recurrent variant ``W_in u``,
the query and ``v``) is computed for every stage time in one batched call, and each
stage computes only what reads ``W``. With ``solver_backend="generic"``, or an
adaptive method or the adjoint, the field goes through :func:`skfwp.nn.solver.integrate`
(torchdiffeq) one stage at a time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .fast_solver import SOLVER_BACKENDS, StagePlan, integrate_fixed_grid, integrate_rank_one
from .layers import FeedForward
from .solver import ModelField, solve

__all__ = [
    "AFFINE_RULES",
    "LEARNING_RULES",
    "READOUTS",
    "SOLVER_BACKENDS",
    "VALUE_INPUTS",
    "VARIANTS",
    "ContinuousFWP",
    "rank_one_form",
]

LEARNING_RULES = ("delta", "hebb", "oja", "hebb_released", "oja_released")
#: The rules whose field is affine in W (without ``post_tanh``, in the ``"cde"`` and
#: ``"ode"`` variants): the rank-one fast solver runs them.
AFFINE_RULES = ("delta", "hebb", "oja", "hebb_released")
READOUTS = ("query", "matrix")
VARIANTS = ("cde", "ode", "recurrent")
VALUE_INPUTS = ("path", "derivative")

#: The fast solver runs the slow net on (stage times x batch) rows at once; above this
#: many rows it runs it in checkpointed chunks of this size, so that long sequences
#: hold ``k, v, beta`` but not every activation of the slow net.
SLOW_NET_ROWS = 2**17


def _outer(a, b):
    """Batched outer product ``a bᵀ`` per head: (..., h, d) x (..., h, d) -> (..., h, d, d)."""
    return a.unsqueeze(-1) * b.unsqueeze(-2)


def _matvec(W, x):
    """``W x`` per head: (..., h, d, d) x (..., h, d) -> (..., h, d)."""
    return (W @ x.unsqueeze(-1)).squeeze(-1)


def learning_rule_update(rule, W, k, v, beta, post_tanh=False):
    """``dW/ds`` of a learning rule.

    Parameters
    ----------
    rule : {"hebb", "oja", "delta", "hebb_released", "oja_released"}
    W : Tensor of shape (..., h, d, d)
    k, v : Tensor of shape (..., h, d)
        Keys (on the simplex; their logits ``k~`` for ``"oja_released"``) and values
        (raw values ``v~`` when ``post_tanh`` or ``"hebb_released"``).
    beta : Tensor of shape (..., h)
        The rate (the raw ``b~`` for ``"hebb_released"``).

    Returns
    -------
    Tensor of shape (..., h, d, d)
    """
    beta = beta[..., None, None]
    if rule in ("hebb", "hebb_released"):
        return beta * _outer(v, k)
    if rule == "oja_released":
        return beta * _outer(v, torch.softmax(k - _matvec(W.transpose(-1, -2), v), dim=-1))
    if rule == "oja":
        return beta * _outer(v, k - _matvec(W.transpose(-1, -2), v))
    error = v - _matvec(W, k)
    if post_tanh:
        error = torch.tanh(error)
    return beta * _outer(error, k)


def rank_one_form(rule, k, v):
    """A rule as the fast solver's ``dS/ds = beta (p − S q) qᵀ`` (or ``beta p qᵀ``).

    Returns ``(p, q, decay, transposed)``: ``S = Wᵀ`` when ``transposed``. Delta:
    ``S = W, p = v, q = k``; Hebb (and ``hebb_released``): the same without decay;
    Oja: ``dWᵀ/ds = beta (k − Wᵀ v) vᵀ``, the delta form on ``Wᵀ`` with keys and
    values swapped.
    """
    if rule == "oja":
        return k, v, True, True
    return v, k, rule == "delta", False


class ContinuousFWP(nn.Module):
    """Continuous FWP: slow net, learning-rule field, Transformer readout.

    Parameters
    ----------
    n_channels : int
        Channels ``K`` of the input path (time channel included).
    n_outputs : int
        Width of the final linear layer ``output``: classes, or regression targets.
    hidden_size : int
        ``H``, divisible by ``n_heads``.
    n_heads : int
    ff_dim : int or None
        Width of the readout feed-forward block (None: ``4 H``).
    learning_rule : {"delta", "hebb", "oja", "hebb_released", "oja_released"}
        Module docstring; the ``_released`` forms are the paper's code's.
    post_tanh : bool
        Delta rule only: squash the prediction error instead of the value.
    variant : {"cde", "ode", "recurrent"}
    derivative_scale : float or sequence of n_channels floats
        ``c`` in ``u = c ⊙ dX/ds`` for the ``"cde"`` and ``"recurrent"`` variants
        (module docstring); kept as a buffer.
    readout : {"query", "matrix"}
        Read the final fast weights with one query from the path (``"query"``) or
        whole (``"matrix"``; module docstring).
    value_input : {"path", "derivative"}
        What the values read: the path ``X`` (MODELS.md) or its scaled derivative
        ``c ⊙ dX/ds``, the input of keys and rates (the released EigenWorms model reads
        keys, rates and values from the log-signature increments).
    initial_map : bool
        ``W(0)`` from a learned linear map ``L`` of the first observation, read by the
        slow net as keys, rates and values (:meth:`initial_state`; the released
        EigenWorms model).

    Notes
    -----
    ``forward(path, solver_backend="auto", **solver_options)`` returns outputs of shape
    ``(batch, n_outputs)`` (a classifier's logits, a regressor's standardised targets);
    the solver state is ``W`` of shape ``(batch, n_heads, d, d)``. ``solver_backend``:
    ``"fast"`` (:mod:`skfwp.nn.fast_solver`; a ValueError says why when the settings do
    not allow it), ``"generic"`` (:func:`skfwp.nn.solver.integrate`) or ``"auto"`` (fast
    where it applies).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skfwp.path import InputPath
    >>> X, lengths = np.random.default_rng(0).normal(size=(3, 2, 6)), np.array([6, 6, 4])
    >>> ip = InputPath().fit(X, lengths)
    >>> path = ip.transform(X, lengths, dtype=torch.float64).batch([0, 1, 2])
    >>> model = ContinuousFWP(ip.n_path_channels_, n_outputs=2, hidden_size=8,
    ...                       n_heads=2).double()
    >>> fast = model(path, solver_backend="fast", method="rk4")
    >>> generic = model(path, solver_backend="generic", method="rk4")
    >>> fast.shape, bool(torch.allclose(fast, generic, rtol=1e-10, atol=1e-12))
    (torch.Size([3, 2]), True)
    """

    def __init__(
        self,
        n_channels,
        n_outputs,
        hidden_size=64,
        n_heads=4,
        ff_dim=None,
        learning_rule="delta",
        post_tanh=False,
        variant="cde",
        derivative_scale=1.0,
        readout="query",
        initial_map=False,
        value_input="path",
    ):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by n_heads={n_heads}.")
        if learning_rule not in LEARNING_RULES:
            raise ValueError(f"learning_rule={learning_rule!r} is not one of {LEARNING_RULES}.")
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {VARIANTS}.")
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is not one of {READOUTS}.")
        if post_tanh and learning_rule != "delta":
            raise ValueError("post_tanh=True applies to learning_rule='delta' only.")
        scale = torch.as_tensor(derivative_scale, dtype=torch.get_default_dtype())
        if not (scale.dim() == 0 or scale.shape == (n_channels,)) or not bool((scale > 0).all()):
            raise ValueError(
                f"derivative_scale must be positive, one number or one per channel "
                f"({n_channels}); got {derivative_scale!r}."
            )
        self.register_buffer("derivative_scale", scale.expand(n_channels).clone())
        self.n_heads, self.head_dim = n_heads, hidden_size // n_heads
        self.learning_rule, self.post_tanh, self.variant = learning_rule, post_tanh, variant
        self.readout_mode = readout
        if value_input not in VALUE_INPUTS:
            raise ValueError(f"value_input={value_input!r} is not one of {VALUE_INPUTS}.")
        self.value_input = value_input
        self.in_proj = nn.Linear(n_channels, hidden_size)  # W_in, b_in
        self.in_norm = nn.LayerNorm(hidden_size)
        self.key_rate = nn.Linear(hidden_size, n_heads * (self.head_dim + 1), bias=False)  # W_kb
        self.value = nn.Linear(n_channels, hidden_size)  # W_v, b_v
        self.recurrent = (
            nn.Linear(hidden_size, hidden_size, bias=False) if variant == "recurrent" else None
        )  # R
        self.query = (  # W_q, for a query read-out or the recurrent variant's feedback
            nn.Linear(hidden_size, hidden_size, bias=False)
            if readout == "query" or variant == "recurrent"
            else None
        )
        read = hidden_size * (self.head_dim if readout == "matrix" else 1)
        self.out_proj = nn.Linear(read, hidden_size, bias=False)  # W_o
        self.ff = FeedForward(hidden_size, 4 * hidden_size if ff_dim is None else ff_dim)
        self.output = nn.Linear(hidden_size, n_outputs)  # W_c
        self.initial_map = nn.Linear(n_channels, n_channels) if initial_map else None  # L

    # -- slow net ---------------------------------------------------------------------
    def _heads(self, x):
        return x.unflatten(-1, (self.n_heads, self.head_dim))  # (..., H) -> (..., h, d)

    def _drive(self, path, s):
        """``u(s)`` (key and rate input) and the value input (``X(s)``, or ``c ⊙ dX/ds``
        with ``value_input="derivative"``), each (batch, [S,] K)."""
        x = path.evaluate(s)
        if self.variant != "ode" or self.value_input == "derivative":
            dx = self.derivative_scale * path.derivative(s)
        u = x if self.variant == "ode" else dx
        return u, (dx if self.value_input == "derivative" else x)

    def query_weights(self, u):
        """Per-head query ``q = softmax(W_q a0)``, shape (..., h, d)."""
        a0 = self.in_norm(self.in_proj(u))
        return torch.softmax(self._heads(self.query(a0)), dim=-1)

    def keys_values_rates(self, u, x, y=None):
        """Slow net: ``k`` (..., h, d) on the simplex, ``v`` (..., h, d), ``beta`` (..., h).

        ``y`` (..., H) is the fast net's output fed back by the recurrent variant.
        """
        pre = self.in_proj(u)
        if y is not None:
            pre = pre + self.recurrent(y)
        k, beta = self._keys_rates(pre)
        return k, self._values(x), beta

    def _keys_rates(self, pre):
        """``k`` and ``beta`` from the slow net's pre-activation ``W_in u (+ R y) + b_in``."""
        kb = self.key_rate(self.in_norm(pre)).unflatten(-1, (self.n_heads, self.head_dim + 1))
        k, rate = kb[..., :-1], kb[..., -1]
        if self.learning_rule != "oja_released":  # that rule takes the softmax itself
            k = torch.softmax(k, dim=-1)
        beta = rate if self.learning_rule == "hebb_released" else torch.sigmoid(rate)
        return k, beta

    def _values(self, x):
        """``v = tanh(W_v X + b_v)`` per head (untanh'd for ``post_tanh``, ``"hebb_released"``)."""
        v = self._heads(self.value(x))
        if not (self.post_tanh or self.learning_rule == "hebb_released"):
            v = torch.tanh(v)
        return v

    # -- dynamics ---------------------------------------------------------------------
    def forward_field(self, s, W, path):
        """``dW/ds`` at time ``s``; ``W`` of shape (batch, h, d, d)."""
        u, x = self._drive(path, s)
        y = None
        if self.variant == "recurrent":
            y = _matvec(W, self.query_weights(u)).flatten(-2)  # (batch, H)
        k, v, beta = self.keys_values_rates(u, x, y)
        return learning_rule_update(self.learning_rule, W, k, v, beta, self.post_tanh)

    def initial_state(self, path):
        """One step of the rule from ``W = 0`` at the first observation: ``W(0) = beta v kᵀ``.

        (Every rule reads ``beta v kᵀ`` at ``W = 0``, with its own ``beta``, ``v`` and
        ``k``: ``tanh(v~)`` for ``post_tanh``, the raw rate for ``"hebb_released"``.)
        With ``initial_map``, the slow net reads ``p = L X(0) + b_L`` as both its
        key/rate input and its value input (the released EigenWorms model).
        """
        if self.initial_map is not None:
            u = x = self.initial_map(path.evaluate(0.0))
        else:
            u, x = self._drive(path, 0.0)
        k, v, beta = self.keys_values_rates(u, x)
        zero = v.new_zeros(v.shape + v.shape[-1:])
        return learning_rule_update(self.learning_rule, zero, k, v, beta, self.post_tanh)

    def readout(self, W, path):
        """Logits from the fast weights at each case's final knot, ``W`` (batch, h, d, d)."""
        if self.readout_mode == "matrix":
            y = W.flatten(-3)  # (batch, h d²)
        else:
            if self.variant == "ode":
                u = path.evaluate_at_ends()
            else:
                u = self.derivative_scale * path.derivative_at_ends()
            y = _matvec(W, self.query_weights(u)).flatten(-2)  # (batch, H)
        z = self.out_proj(y)
        z = z + self.ff(z)
        return self.output(z)

    @property
    def affine(self):
        """Whether ``dW/ds`` is affine in ``W`` (the rank-one fast solver applies)."""
        return (
            self.learning_rule in AFFINE_RULES
            and self.variant in ("cde", "ode")
            and not self.post_tanh
        )

    def forward(self, path, solver_backend="auto", **solver_options):
        W_end = solve(
            ModelField(self),
            self.initial_state(path),
            path,
            self.integrate_fast,
            solver_backend,
            **solver_options,
        )
        return self.readout(W_end, path)

    def integrate_fast(self, W0, path, method="rk4", step_size=None):
        """``W(T_i)`` from a fast path: the slow net at every stage time in one call.

        The rank-one solver where the rule is affine in ``W`` (:attr:`affine`), the
        fixed-grid loop otherwise.
        """
        if int(path.ends.max()) == 0:  # every case is a single observation
            return W0
        plan = StagePlan(path.ends, method, step_size, W0.dtype)
        u, x = self._drive(path, plan.times)  # (batch, n_times, K)
        if not self.affine:
            return self._integrate_fixed_grid(W0, u, x, plan)
        k, v, beta = self._keys_values_rates_at_stages(u, x)
        p, q, decay, transposed = rank_one_form(self.learning_rule, k, v)
        S0 = W0.transpose(-1, -2) if transposed else W0
        S = integrate_rank_one(S0, p, q, beta, plan, decay=decay)
        return S.transpose(-1, -2) if transposed else S

    def _integrate_fixed_grid(self, W0, u, x, plan):
        """``W(T_i)`` by :func:`skfwp.nn.fast_solver.integrate_fixed_grid` for a rule that is
        not affine in ``W``; ``u, x`` (batch, n_times, K) at ``plan.times``."""
        recurrent = self.variant == "recurrent"

        def prepare(u, x):  # (n_stages, n, batch, K) -> the terms that do not read W
            if recurrent:
                return self.in_proj(u), self.query_weights(u), self._values(x)
            return self.keys_values_rates(u, x)

        def field(W, terms):
            (W,) = W
            if recurrent:
                pre, q, v = terms
                k, beta = self._keys_rates(pre + self.recurrent(_matvec(W, q).flatten(-2)))
            else:
                k, v, beta = terms
            return (learning_rule_update(self.learning_rule, W, k, v, beta, self.post_tanh),)

        drive = (u.transpose(0, 1), x.transpose(0, 1))  # time-major
        (W_end,) = integrate_fixed_grid(
            field, (W0,), drive, plan, prepare=prepare, inputs=tuple(self.parameters())
        )
        return W_end

    def _keys_values_rates_at_stages(self, u, x):
        """:meth:`keys_values_rates` of (batch, n_times, K) inputs, time-major outputs.

        Large inputs go through the slow net in checkpointed chunks of
        :data:`SLOW_NET_ROWS` rows (recomputed in the backward).
        """
        u, x = u.transpose(0, 1).contiguous(), x.transpose(0, 1).contiguous()
        n_times, batch = u.shape[:2]
        if n_times * batch <= SLOW_NET_ROWS or not torch.is_grad_enabled():
            return self.keys_values_rates(u, x)
        size = max(SLOW_NET_ROWS // batch, 1)
        chunks = [
            list(
                checkpoint(
                    self.keys_values_rates, u[i : i + size], x[i : i + size], use_reentrant=False
                )
            )
            for i in range(0, n_times, size)
        ]
        outputs = []
        for j in range(3):  # k, v, beta
            outputs.append(torch.cat([chunk[j] for chunk in chunks]))
            for chunk in chunks:
                chunk[j] = None  # free each part once it is concatenated
        return outputs
