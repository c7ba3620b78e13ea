"""Neurally-controlled ODEs (N-CODE; Chalvidal, Ricci, VanRullen & Serre, ICLR 2021).

The parameters ``θ`` of the state's vector field are a state of their own, steered
by a trainable controller. On a sequence (skfwp's form; the paper works on static
inputs), with ``z`` in R^H and ``θ`` in R^{H x H}::

    dz/ds = (tanh(θ z + U X(s) + b) − z) / τ      (U X(s) only with input_drive)
    dθ/ds = A Bᵀ − λ ⊙ θ                          control "open" / "closed"
    z(0)  = E X(0) + e                            (e: a bias, beyond the paper's E X(0))
    θ(0)  = g(z(0)) = Θ + A₀ B₀ᵀ                   learned base + rank-r data term

The controller is an MLP ``C`` whose output is split into ``A, B`` in R^{H x r}
(``r = control_rank``), squashed as ``tanh(·) / √(r H)``; what it reads is the
``control`` mode:

====================  ====================================================  ===========
``control``           controller input ``c(s)``                               ``θ(s)``
====================  ====================================================  ===========
``"closed"``          ``[z(s), θ(s) z(s), X(s)]`` (feedback)                  evolves
``"open"``            ``[z(0), t(s)]`` (planned from the start, blind)        evolves
``"static"``          none                                                    ``θ(0)``
``"fixed"``           none                                                    ``Θ``
====================  ====================================================  ===========

``t(s)`` is the path's time channel (channel 0). ``"static"`` keeps the
data-dependent ``θ(0) = g(z(0))`` all along (the ablation); ``"fixed"`` is one learned
matrix ``Θ`` for every case: the plain neural ODE ``dz/ds = tanh(Θ z + U X + b) − z``
that the paper improves on. With ``input_drive=False`` the data enter only through
``z(0)`` and ``θ(0)`` (the paper's pure form): ``U X(s)`` is dropped from the state's
field and ``X(s)`` from the closed-loop controller's input.

Design choices (the paper, on static inputs, leaves them open):

- **θ in the controller.** The closed loop reads ``θ`` through its action ``θ z`` on
  the current state (H numbers, not H² of a flattened matrix), so what a step keeps
  for the backward stays ``O(H r + width)`` per case beyond ``θ``-sized tensors
  (forming ``A Bᵀ`` costs ``H² r`` operations).
- **Bounded by construction.** Every entry of ``A Bᵀ`` lies in ``(−1/H, 1/H)`` and
  ``λ = λ_max sigmoid(ρ)`` (learned, one per entry of ``θ``) lies in ``(0, λ_max)``,
  so each entry obeys ``|θ_ij(s)| ≤ max(|θ_ij(0)|, 1 / (H λ_ij))``; and ``tanh``
  bounds the state: ``|z_i(s)| ≤ max(|z_i(0)|, 1)``, whatever the input and however
  long the horizon. This holds for the exact flow, and for the fixed-step solvers at
  steps up to 1/λ_max: ``λ_max = 1`` (per observation) keeps ``λ h`` inside the
  stability region of euler (< 2) and rk4 (< 2.78) at the default step ``h = 1``.
  A ``softplus(ρ)`` (the first design) has no upper limit: a learned ``λ = 3`` made rk4 at step 1
  grow ``θ`` from 0.56 to 5e9 within 59 steps.
  The ``1/H`` keeps the steady ``θ``'s norm independent of ``H``: with entries up to
  1 instead, the controller drove ``‖θ‖₂`` from 1.1 to 82 within 6 epochs on
  BasicMotions (H = 32), and the gradient through 100 steps overflowed.
- **Initial map.** ``E`` starts orthogonal on the data channels (and 0 on the time
  channel, which is 0 at ``s = 0`` anyway), so that ``z(0)`` keeps the geometry of
  ``X(0)``, as the paper's ``z(0) = x`` does: with the default uniform start, ``E``
  is often nearly singular, squeezes the cases into a region where ``g`` is nearly
  linear, and training stalls (on the annuli: 1 seed in 6 below 0.9 test accuracy,
  against 0 of 6 with this start). ``A₀, B₀`` come from a second MLP on ``z(0)``,
  scaled by ``1/√r`` (not squashed), so the initial field can be far from ``Θ``
  where the data ask.
- **Time constant.** ``τ`` (``tau``, default 1: MODELS.md's form) slows the state
  alone: with ``θ z`` small the state forgets its past at the rate ``1/τ`` per solver
  step, and with log-signature windows a step is a whole window (at most 32 steps for
  a long series by default), so at ``τ = 1`` what ``z(T_i)`` keeps of the first
  windows is ``e^{−31}``. ``θ``'s field keeps its own scale (``λ`` is learned). The
  bounds below hold for any ``τ > 0``; the fixed-step stability of the ``−z/τ`` term
  needs ``h/τ`` inside the method's region, as ``λ h`` does.
- **Readout.** Linear on ``z(T_i)``, each case at its own final knot: a nonlinear
  readout would let any flow separate what a flow alone cannot (the paper's point).

Every piece of the solver state (``z``, the entries of ``θ`` and, open loop, the
controller's constant input ``z(0)``) is one flat vector, so that the adjoint method
sees all of it.

Solvers (``solver_backend``): the fast path (:func:`skfwp.nn.fast_solver.integrate_fixed_grid`;
methods euler, midpoint, rk4 without adjoint) steps ``(z, θ)`` as two tensors (``z``
alone for ``"static"`` and ``"fixed"``, whose ``θ`` is a constant) and computes every
term that depends on the input path only for many stage times in one batched call:
``U X(s) + b``, the closed-loop controller's first layer on ``X(s)`` (its weights split
as ``W [z, θz, X] = W_zθ [z, θz] + W_X X``), and, open loop, the whole controller
output ``A, B`` from ``[z(0), t(s)]``. The generic path (:func:`skfwp.nn.solver.integrate`)
evaluates the full field on the flat state at each stage. Both give the same logits
and gradients up to float rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .fast_solver import StagePlan, integrate_fixed_grid, use_fast_path
from .layers import mlp
from .solver import ModelField, integrate

__all__ = ["CONTROLS", "NCODE"]

#: What the controller sees in each mode (see the module docstring).
CONTROLS = ("closed", "open", "static", "fixed")

#: λ's starting value: θ forgets on a scale of 10 observations; entries stay within ±10/H.
_INITIAL_DECAY = 0.1
#: λ's ceiling, per unit of the observation index (see "Bounded by construction").
MAX_DECAY = 1.0


class NCODE(nn.Module):
    """Neurally-controlled ODE: ``dz/ds = (tanh(θ z + U X + b) − z) / τ``, ``θ`` controlled.

    Parameters
    ----------
    n_channels : int
        Channels ``K`` of the input path (time channel included).
    n_outputs : int
        Width of the final linear layer ``output``: classes, or regression targets.
    hidden_size : int
        ``H``, the dimension of ``z`` (``θ`` is ``H x H``).
    control : {"closed", "open", "static", "fixed"}
    control_rank : int
        ``r``, the rank of the controller's update ``A Bᵀ`` and of ``θ(0) − Θ``.
    controller_layers : tuple of int
        Widths of the ReLU hidden layers of the controller and of the initial map ``g``.
    input_drive : bool
        Let ``X(s)`` enter the state's field (``U X(s)``) and the closed-loop controller.
    tau : float
        ``τ > 0``, the state's time constant in solver-grid units (module docstring).

    Notes
    -----
    ``forward(path, solver_backend="auto", **solver_options)`` returns outputs of shape
    ``(batch, n_outputs)`` (a classifier's logits, a regressor's standardised targets);
    the generic solver's state is ``[z, vec θ, z(0)]`` of shape ``(batch, H + H² + H)``
    (the parts a mode needs: ``"fixed"`` integrates ``z`` alone). ``solver_backend``:
    ``"fast"`` (module docstring; a ValueError names the setting that prevents it),
    ``"generic"`` or ``"auto"`` (fast where it applies).

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import InputPath
    >>> X, lengths = np.random.default_rng(0).normal(size=(3, 2, 6)), np.array([6, 6, 4])
    >>> ip = InputPath().fit(X, lengths)
    >>> path = ip.transform(X, lengths).batch([0, 1, 2])
    >>> model = NCODE(ip.n_path_channels_, n_outputs=2, hidden_size=4, control_rank=2)
    >>> model(path, method="rk4").shape
    torch.Size([3, 2])
    >>> model.trajectory(path, method="rk4", parts=("z", "theta"))["theta"].shape
    torch.Size([3, 6, 4, 4])
    """

    def __init__(
        self,
        n_channels,
        n_outputs,
        hidden_size=32,
        control="closed",
        control_rank=4,
        controller_layers=(64,),
        input_drive=True,
        tau=1.0,
    ):
        super().__init__()
        if control not in CONTROLS:
            raise ValueError(f"control={control!r} is not one of {CONTROLS}.")
        if not tau > 0:
            raise ValueError(f"tau={tau!r} must be positive.")
        self.tau = float(tau)
        H, r = hidden_size, control_rank
        self.hidden_size, self.rank, self.control = H, r, control
        self.input_drive = bool(input_drive)
        self.initial = nn.Linear(n_channels, H)  # E, e
        with torch.no_grad():  # z(0) keeps the geometry of X(0); see the module docstring
            self.initial.weight[:, 0] = 0.0
            if n_channels > 1:
                nn.init.orthogonal_(self.initial.weight[:, 1:])
        # U X + b; without input drive only the bias b remains
        self.drive = nn.Linear(n_channels, H) if input_drive else None
        self.bias = None if input_drive else nn.Parameter(torch.zeros(H))
        self.theta_base = nn.Parameter(torch.empty(H, H))  # Θ
        nn.init.uniform_(self.theta_base, -1 / math.sqrt(H), 1 / math.sqrt(H))
        layers = tuple(controller_layers)
        self.initial_map = mlp(H, layers, 2 * H * r) if control != "fixed" else None  # g
        if control in ("open", "closed"):
            n_in = {"open": H + 1, "closed": 2 * H + (n_channels if input_drive else 0)}
            self.controller = mlp(n_in[control], layers, 2 * H * r)  # C
            # λ = λ_max sigmoid(ρ) in (0, λ_max), one per entry of θ
            rho = math.log(_INITIAL_DECAY / (MAX_DECAY - _INITIAL_DECAY))
            self.decay_logit = nn.Parameter(torch.full((H, H), rho))
        else:
            self.controller, self.decay_logit = None, None
        self.output = nn.Linear(H, n_outputs)  # W_c, b_c

    # -- pieces of the dynamics -----------------------------------------------------------
    @property
    def decay(self):
        """``λ = λ_max sigmoid(ρ)``, shape (H, H); None when ``θ`` does not evolve."""
        return None if self.decay_logit is None else MAX_DECAY * torch.sigmoid(self.decay_logit)

    def _factors(self, out, squash):
        """Split an MLP output (..., 2 H r) into ``A, B`` (..., H, r).

        ``squash``: ``tanh(·) / √(r H)``, so that every entry of ``A Bᵀ`` lies in
        ``(−1/H, 1/H)`` and its Frobenius norm below 1 (the controller); otherwise
        ``· / √r`` (the initial map).
        """
        if squash:
            out = torch.tanh(out) / math.sqrt(self.hidden_size)
        out = out / math.sqrt(self.rank)
        return out.unflatten(-1, (2, self.hidden_size, self.rank)).unbind(-3)  # (..., H, r) x 2

    def theta_update(self, c, theta):
        """``dθ/ds = A Bᵀ − λ ⊙ θ`` for controller inputs ``c`` (batch, n_in), (batch, H, H)."""
        A, B = self._factors(self.controller(c), squash=True)
        return A @ B.transpose(-1, -2) - self.decay * theta

    def state_velocity(self, z, theta_z, x):
        """``dz/ds = (tanh(θ z + U x + b) − z) / τ`` from ``z`` and ``θ z``, each (batch, H)."""
        return self._relax(z, theta_z + (self.drive(x) if self.input_drive else self.bias))

    def _relax(self, z, pre):
        """``(tanh(pre) − z) / τ``."""
        velocity = torch.tanh(pre) - z
        return velocity if self.tau == 1.0 else velocity / self.tau

    def initial_theta(self, z0):
        """``θ(0) = Θ + A₀ B₀ᵀ`` with ``[A₀, B₀] = g(z(0))``, shape (batch, H, H)."""
        if self.initial_map is None:
            return self.theta_base.expand(len(z0), -1, -1)
        A0, B0 = self._factors(self.initial_map(z0), squash=False)
        return self.theta_base + A0 @ B0.transpose(-1, -2)

    # -- the solver state -----------------------------------------------------------------
    def _parts(self):
        """Names of the pieces of the flat solver state, in order."""
        if self.control == "fixed":
            return ("z",)
        if self.control == "open":
            return ("z", "theta", "z0")
        return ("z", "theta")

    def pack(self, z, theta=None, z0=None):
        """The flat solver state ``[z, vec θ, z(0)]`` (the pieces this mode integrates)."""
        pieces = {"z": z, "theta": theta, "z0": z0}
        return torch.cat([pieces[name].flatten(1) for name in self._parts()], dim=1)

    def unpack(self, state):
        """``{name: piece}`` from a flat state (..., D): ``z`` (..., H), ``theta`` (..., H, H)."""
        H = self.hidden_size
        sizes = {"z": H, "theta": H * H, "z0": H}
        names = self._parts()
        pieces = dict(zip(names, state.split([sizes[n] for n in names], dim=-1), strict=True))
        if "theta" in pieces:
            pieces["theta"] = pieces["theta"].unflatten(-1, (H, H))
        return pieces

    def initial_state(self, path):
        """The flat state at ``s = 0``: ``z(0) = E X(0) + e``, ``θ(0) = g(z(0))``."""
        z0 = self.initial(path.evaluate(0.0))
        theta0 = None if self.control == "fixed" else self.initial_theta(z0)
        return self.pack(z0, theta0, z0)

    def forward_field(self, s, state, path):
        """The flat state's velocity at time ``s`` of ``path``; ``state`` (batch, D)."""
        parts = self.unpack(state)
        z = parts["z"]
        theta = parts.get("theta", self.theta_base.unsqueeze(0))
        x = path.evaluate(s) if (self.input_drive or self.control == "open") else None
        theta_z = (theta @ z.unsqueeze(-1)).squeeze(-1)  # (batch, H), once per evaluation
        dz = self.state_velocity(z, theta_z, x)
        if self.control == "fixed":
            return dz
        if self.control == "static":
            return self.pack(dz, torch.zeros_like(theta))
        if self.control == "open":
            c = torch.cat([parts["z0"], x[:, :1]], dim=-1)  # [z(0), t(s)]
            return self.pack(dz, self.theta_update(c, theta), torch.zeros_like(z))
        feedback = [z, theta_z]
        if self.input_drive:
            feedback.append(x)
        return self.pack(dz, self.theta_update(torch.cat(feedback, dim=-1), theta))

    # -- solving ----------------------------------------------------------------------------
    def forward(self, path, solver_backend="auto", **solver_options):
        method = solver_options.get("method", "rk4")
        if use_fast_path(solver_backend, method, solver_options.get("adjoint", False)):
            z_end = self.integrate_fast(path, method, solver_options.get("step_size"))
        else:
            state = integrate(ModelField(self), self.initial_state(path), path, **solver_options)
            z_end = self.unpack(state)["z"]
        return self.output(z_end)

    def integrate_fast(self, path, method="rk4", step_size=None):
        """``z(T_i)`` from :func:`skfwp.nn.fast_solver.integrate_fixed_grid`, shape (batch, H).

        Input terms per stage (module docstring), from one batched call per run of
        steps: ``U X + b`` (H,) with input drive; closed loop, the controller's first
        layer on ``X`` (width,); open loop, ``A, B`` (H, r) each.
        """
        H = self.hidden_size
        z0 = self.initial(path.evaluate(0.0))
        theta0 = None if self.control == "fixed" else self.initial_theta(z0)
        if int(path.ends.max()) == 0:  # every case is a single observation
            return z0
        plan = StagePlan(path.ends, method, step_size, z0.dtype)
        reads_path = self.input_drive or self.control == "open"
        drive = (path.evaluate(plan.times).transpose(0, 1),) if reads_path else ()
        control = self.controller if self.control in ("open", "closed") else None
        if control is not None:
            first, rest, decay = control[0], control[1:], self.decay
        # input weights: U (with input drive), then the closed loop's W_X, in one product
        w_in, b_in = [], []
        if self.input_drive:
            w_in.append(self.drive.weight)
            b_in.append(self.drive.bias)
        if self.control == "closed" and self.input_drive:
            w_in.append(first.weight[:, 2 * H :])
            b_in.append(first.bias)
        w_in = torch.cat(w_in) if w_in else None
        b_in = torch.cat(b_in) if b_in else None

        def prepare(*x):
            terms = []
            if w_in is not None:
                terms = list(F.linear(x[0], w_in, b_in).split([H, len(w_in) - H], dim=-1))
                terms = terms if self.control == "closed" else terms[:1]
            if self.control == "open":  # controller on [z(0), t(s)], every stage at once
                pre = F.linear(z0, first.weight[:, :H], first.bias)  # (batch, width)
                pre = torch.addcmul(pre, x[0][..., :1], first.weight[:, H])
                terms += self._factors(rest(pre), squash=True)
            return [t for t in terms if t.shape[-1] > 0]

        def velocity(z, theta, terms):
            theta_z = torch.bmm(theta, z.unsqueeze(-1)).squeeze(-1)
            shift = terms[0] if self.input_drive else self.bias
            return theta_z, self._relax(z, theta_z + shift)

        def field(state, terms):
            if control is None:
                (z,) = state
                return (velocity(z, theta, terms)[1],)
            z, th = state
            theta_z, dz = velocity(z, th, terms)
            if self.control == "closed":
                c = torch.cat([z, theta_z], dim=-1)
                pre = F.linear(c, first.weight[:, : 2 * H])
                pre = pre + (terms[-1] if self.input_drive else first.bias)
                A, B = self._factors(rest(pre), squash=True)
            else:
                A, B = terms[-2:]
            return dz, torch.baddbmm(-decay * th, A, B.transpose(-1, -2))

        if control is None:
            theta = theta0 if theta0 is not None else self.theta_base.expand(len(z0), H, H)
            state = (z0,)
        else:
            state = (z0, theta0)
        inputs = tuple(self.parameters())
        end = integrate_fixed_grid(field, state, drive, plan, prepare=prepare, inputs=inputs)
        return end[0]

    def trajectory(self, path, parts=("z",), **solver_options):
        """The solution at every knot ``s = 0, 1, ..., t_end``.

        Returns ``z`` of shape (batch, n_knots, H) for ``parts=("z",)``; otherwise a
        dict with the parts asked: ``"z"`` and/or ``"theta"`` (batch, n_knots, H, H).
        Case ``i`` is meaningful up to its own final knot ``path.ends[i]``.
        """
        states = integrate(
            ModelField(self), self.initial_state(path), path, all_knots=True, **solver_options
        )
        pieces = self.unpack(states)
        if "theta" in parts and "theta" not in pieces:  # fixed: Θ at every knot
            pieces["theta"] = self.theta_base.expand(*states.shape[:2], -1, -1)
        if tuple(parts) == ("z",):
            return pieces["z"]
        return {name: pieces[name] for name in parts}
