"""Every model class's hyperparameters, declared once: names, defaults, allowed values, what each
does and when to change it.

Each user-facing class takes its hyperparameters from one :class:`ModelConfig` (LensKit keeps
one config class per model family the same way): :func:`with_config` writes the class's
``__init__`` from it, with an explicit :class:`inspect.Signature`, so ``inspect.signature``,
``get_params`` and Surprise's ``GridSearchCV`` see ordinary named parameters stored verbatim,
while the list itself exists only here. The class docstring gets the parameters, the few that
shape the model first; :func:`parameter_reference` renders the same declarations as the
documentation's parameter reference.

One vocabulary holds across the package: ``ridge`` is the ridge penalty of a model's main fit
(``kernel_ridge``, ``bias_ridge`` those of the kernel step's fits and of the biases); counts are
``n_<what is counted>`` (``n_updates`` kernel updates, ``n_sweeps`` ALS or Gibbs sweeps,
``n_bias_sweeps``); ``rank`` is ``None`` for no truncation (the dense kernel, every eigenpair),
an int for that rank and ``"auto"`` for the library's rule; ``co_rating`` weighs the signal of
who rated what.

This module declares; it imports nothing of the package but the constraints of
:mod:`rfm_recsys.params`.
"""

from __future__ import annotations

import inspect
import numbers
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .params import AnyOf, Check, Constraint, Interval, Options

__all__ = [
    "ALS",
    "BAYESIAN_MF",
    "BAYESIAN_SVDPP",
    "CLASSES",
    "EASE",
    "FRAME",
    "IMPLICIT_LINRFM",
    "IRLS",
    "KERNEL_RFM",
    "LINRFM",
    "MODEL",
    "OPERATIONAL",
    "ModelConfig",
    "Param",
    "parameter_reference",
    "with_config",
]

#: Role of a parameter that shapes the fitted model (what the docs list first).
MODEL = "model"
#: Role of a parameter that changes how a fit runs, not what it fits (memory, threads, seeds...).
OPERATIONAL = "operational"


@dataclass(frozen=True)
class Param:
    """One hyperparameter.

    Attributes:
        name: the ``__init__`` argument and the attribute it is stored under.
        default: its default value.
        constraint: what it may hold (checked at the start of ``fit``).
        doc: what it does, one or two sentences.
        when: when to change it (empty for parameters whose doc says it all).
        role: :data:`MODEL` or :data:`OPERATIONAL`.
        annotation: type hint shown by ``inspect.signature``.
    """

    name: str
    default: Any
    constraint: Constraint
    doc: str
    when: str = ""
    role: str = MODEL
    annotation: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class ModelConfig:
    """The ordered hyperparameters of one model family.

    Attributes:
        params: in ``__init__`` order (positional calls keep working).
    """

    params: tuple[Param, ...]

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def constraints(self) -> dict[str, Constraint]:
        return {p.name: p.constraint for p in self.params}

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def with_defaults(self, **defaults: Any) -> ModelConfig:
        """The same family with other defaults."""
        unknown = set(defaults) - set(self.names())
        if unknown:
            raise KeyError(f"not parameters of this config: {sorted(unknown)}")
        params = tuple(
            replace(p, default=defaults[p.name]) if p.name in defaults else p for p in self.params
        )
        return replace(self, params=params)

    def __add__(self, other: ModelConfig) -> ModelConfig:
        """Both parameter lists, this one first."""
        return ModelConfig(self.params + other.params)

    def signature(self) -> inspect.Signature:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature(
            [
                inspect.Parameter(p.name, kind, default=p.default, annotation=p.annotation)
                for p in self.params
            ]
        )

    def doc_section(self) -> str:
        """The class docstring's parameter sections: the model's first, then operational."""
        out = []
        for role, title in ((MODEL, "Model parameters"), (OPERATIONAL, "Operational parameters")):
            params = [p for p in self.params if p.role == role]
            if not params:
                continue
            out += ["", f"    {title}:"]
            for p in params:
                text = f"{p.name} ({_type_name(p)}, default {p.default!r}): {p.doc}"
                if p.when:
                    text += f" *When to change:* {p.when}"
                out += textwrap.wrap(
                    text, width=96, initial_indent=" " * 8, subsequent_indent=" " * 12
                )
        return "\n".join(out) + "\n"


def _type_name(p: Param) -> str:
    a = p.annotation
    if a is inspect.Parameter.empty:
        return "object"
    return a.__name__ if isinstance(a, type) else str(a).replace("NoneType", "None")


def with_config(config: ModelConfig) -> Callable[[type], type]:
    """Class decorator: ``__init__`` from ``config``, stored verbatim, no work done there.

    The generated ``__init__`` carries an explicit signature (``self`` plus the parameters in
    order, with their defaults), calls the next ``__init__`` in the MRO without arguments
    (Surprise's ``AlgoBase`` sets its own attributes there) and stores each argument under its
    name. The class also gets ``config``, ``_parameter_constraints`` and a docstring section
    listing the parameters.
    """

    def decorate(cls: type) -> type:
        sig = config.signature()
        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            super(cls, self).__init__()
            for name, value in bound.arguments.items():
                setattr(self, name, value)

        __init__.__signature__ = sig.replace(parameters=[self_param, *sig.parameters.values()])
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__module__ = cls.__module__
        __init__.__doc__ = f"Store the hyperparameters of {cls.__name__} verbatim."
        cls.__init__ = __init__
        cls.config = config
        cls._parameter_constraints = config.constraints()
        cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + config.doc_section()
        return cls

    return decorate


# ---------------------------------------------------------------------- constraints


def _is_float_dtype(value: Any) -> bool:
    return np.dtype(value) in (np.dtype(np.float32), np.dtype(np.float64))


def _is_seed(value: Any) -> bool:
    if value is None or isinstance(
        value, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)
    ):
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _is_scale(value: Any) -> bool:
    if value is None:
        return True
    # a pair of real numbers: not a string such as "15", whose characters float() would take
    if isinstance(value, (str, bytes)) or len(value) != 2:
        return False
    if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in value):
        return False
    lo, hi = (float(x) for x in value)
    return np.isfinite(lo) and np.isfinite(hi) and lo < hi


_NONNEG = Interval(0, None)
_POSITIVE = Interval(0, None, closed="neither")
_COUNT = Interval(0, None, integer=True)
_FLOAT_DTYPE = Check(_is_float_dtype, "'float32' or 'float64'")
_SEED = Check(_is_seed, "None, a non-negative integer or a numpy Generator")
_FLAG = Check(lambda v: isinstance(v, (bool, np.bool_, numbers.Integral)), "a boolean")
_NONE = Options(None)
_COLUMN = Check(lambda v: hash(v) is not None, "a hashable column name")

# ---------------------------------------------------------------------- lin-RFM and its family

# The defaults (n_updates 2, ridge 10, power 1, bias_ridge 2, orient "auto") were chosen on
# validation shares of ml-100k and ml-latest-small training folds:
# ``python -m evaluation.choose_defaults``.
_N_UPDATES = Param(
    "n_updates",
    2,
    _COUNT,
    "kernel updates: each replaces the kernel by the AGOP of the fitted rows (0: one ridge fit "
    "with ``K = I``).",
    "2 was best on validation shares of ml-100k and ml-latest-small; 3 can help denser data, "
    "more over-sharpens the learned geometry.",
    annotation=int,
)
_RIDGE = Param(
    "ridge",
    10.0,
    _NONNEG,
    "ridge penalty of the row fits, relative to the kernel's unit mean diagonal.",
    "the main knob: raise it for sparser or noisier ratings, lower it for denser ones "
    "(validation grids 5-40).",
    annotation=float,
)
_POWER = Param(
    "power",
    1.0,
    # AGOP powers beyond 4 underflow every eigenvalue but the top one in float32
    Interval(0, 4, closed="right"),
    "exponent of the AGOP in each update (the reference code's alpha is power / 2). 1 needs no "
    "eigendecomposition; any other value an ``eigh`` of a ``d x d`` matrix.",
    "rarely: 0.5 (nuclear norm) and 2 (the reference code's default) were not better on ratings "
    "and need the dense kernel's eigendecomposition.",
    annotation=float,
)
_ORIENT = Param(
    "orient",
    "auto",
    Options("auto", "users", "items"),
    "the kernel's (feature) side: ``'auto'`` the smaller one, ``'items'`` (users are the rows "
    "and the kernel is over items) or ``'users'``.",
    "'auto' keeps the kernel small; 'items' when the similarity of items is what you want "
    "(``similar_items`` then reads the kernel itself).",
    annotation=str,
)
_RANK = Param(
    "rank",
    "auto",
    AnyOf(Options(None, "auto"), Interval(1, None, integer=True)),
    "form of the kernel: ``None`` the dense ``d x d`` matrix, an int ``r`` the factored "
    "``U diag(s) U^T`` (time and memory linear in ``d``, predictions in O(r)), ``'auto'`` rank "
    "128 when the feature side has more than 256 columns, else dense.",
    "beyond a few thousand feature columns the dense kernel's ``d^2`` memory dominates; a "
    "larger rank is more accurate on large catalogues and costs time linearly.",
    annotation=int | str | None,
)
_BIAS_RIDGE = Param(
    "bias_ridge",
    2.0,
    _NONNEG,
    "ridge penalty of the user and item biases fitted before the kernel part.",
    "rarely (validation liked 2-5); raise it when many users or items have one or two ratings.",
    annotation=float,
)
_OPERATIONAL = (
    Param(
        "n_bias_sweeps",
        10,
        _COUNT,
        "alternating sweeps of the bias fit (10 converges well below rating precision).",
        role=OPERATIONAL,
        annotation=int,
    ),
    Param(
        "dtype",
        "float32",
        _FLOAT_DTYPE,
        "``'float32'`` or ``'float64'`` for the kernel and the solves.",
        "float64 only to compare with other code to many digits; float32 halves memory.",
        role=OPERATIONAL,
        annotation=str,
    ),
    Param(
        "tol",
        None,
        AnyOf(_NONE, _NONNEG),
        "stop early once the kernel's relative change falls below it (``None``: never, and "
        "the change is not computed; 0: computed for the history, never stops).",
        role=OPERATIONAL,
        annotation=float | None,
    ),
    # 1e-2 was level with the direct solves on validation shares of ml-100k and
    # ml-latest-small (0.8945 / 0.8359 against 0.8945 / 0.8360), 1e-1 cost 0.0007-0.0008:
    # ``python -m evaluation.choose_defaults --kernel-step --grid '{"solve_tol": [...]}'``
    Param(
        "solve_tol",
        1e-2,
        AnyOf(_NONE, Interval(0, 1, closed="right")),
        "relative residual at which the conjugate-gradient row fits stop (each refit started "
        "from the previous one's coefficients); ``None`` solves every row directly.",
        "None (or 1e-6) to compare with direct solves to many digits; 1e-2 costs nothing "
        "measurable in accuracy and saves most of the fit's solve time.",
        role=OPERATIONAL,
        annotation=float | None,
    ),
    Param(
        "validation_share",
        0.0,
        Interval(0, 1, closed="left"),
        "share of the training ratings held out for early stopping on validation RMSE (then "
        "refit on all with the best iteration count); 0 disables it.",
        "when trying many updates on new data: 0.1 picks their number for you.",
        role=OPERATIONAL,
        annotation=float,
    ),
    Param(
        "patience",
        2,
        Interval(1, None, integer=True),
        "iterations without validation improvement before stopping.",
        role=OPERATIONAL,
        annotation=int,
    ),
    Param(
        "duplicates",
        "raise",
        Options("raise", "mean", "last"),
        "repeated (user, item) pairs: ``'raise'``, ``'mean'`` or ``'last'``.",
        role=OPERATIONAL,
        annotation=str,
    ),
    Param(
        "random_state",
        None,
        _SEED,
        "seed of the validation split and of the randomized eigensolvers (fits are "
        "deterministic for a seed; ``None`` is seed 0 for the eigensolvers).",
        role=OPERATIONAL,
    ),
    Param(
        "max_memory",
        None,
        AnyOf(_NONE, _POSITIVE),
        "refuse fits whose estimated peak memory exceeds this many bytes (``None``: the "
        "machine's available memory).",
        role=OPERATIONAL,
        annotation=int | None,
    ),
    Param(
        "backend",
        "threads",
        Options("threads", "dask"),
        "``'threads'`` (this process) or ``'dask'`` (the current ``dask.distributed`` client, "
        "else a temporary ``LocalCluster``; needs the ``dask`` extra).",
        "'dask' when the ratings outgrow one machine (a dask DataFrame given to ``fit`` implies "
        "it).",
        role=OPERATIONAL,
        annotation=str,
    ),
    Param("verbose", False, _FLAG, "show a progress bar.", role=OPERATIONAL, annotation=bool),
)

#: Plain lin-RFM on ratings (``LinRFMAlgo``, ``LinRFM``): the paper's algorithm with biases and
#: a ridge.
LINRFM = ModelConfig((_N_UPDATES, _RIDGE, _POWER, _ORIENT, _RANK, _BIAS_RIDGE, *_OPERATIONAL))

# The kernel step's settings F* (Gaussian, bandwidth 0.7, kernel_ridge 3, co_rating 2, 3 kernel
# updates, the kernel over items) were chosen by ``python -m evaluation.explore_kernel_rfm`` on
# validation shares of folds 0 and 1 of ml-100k and ml-latest-small
# (evaluation/kernel_rfm_experiments.md, section 9): best there for both the dense and the
# factored kernel, about 0.025 validation RMSE ahead of plain lin-RFM.
_STEP = (
    Param(
        "kernel",
        "gaussian",
        Options("linear", "gaussian", "laplace"),
        "kernel of the step's row fits over the learned geometry ``M`` (plus the co-rating "
        "signal): ``'gaussian'`` ``n_j n_k exp((cos_jk - 1) / h^2)``, ``'laplace'`` "
        "``n_j n_k exp(-sqrt(2 - 2 cos_jk) / h)`` (``n_j = sqrt(M_jj)``, ``cos_jk`` the cosine "
        "of features ``j`` and ``k`` in ``M``) or ``'linear'`` (``M`` itself).",
        "'laplace' was level with 'gaussian' on validation; 'linear' keeps only the co-rating "
        "signal's gain.",
        annotation=str,
    ),
    Param(
        "bandwidth",
        0.7,
        # beyond [1e-3, 1e3] the radial kernel is the diagonal or the rank-one n n^T to float
        # precision (and h^2 under- or overflows)
        Interval(1e-3, 1e3),
        "``h`` of the radial kernels (cosines of a mean-diagonal-1 geometry, so it means the same "
        "on every data set).",
        "validation chose 0.7-1.0 on both data sets; smaller is more local.",
        annotation=float,
    ),
    Param(
        "co_rating",
        2.0,
        _NONNEG,
        "weight of the co-rating matrix (who rated what, rescaled to mean diagonal 1) added to "
        "the learned geometry before each kernel is built; 0 disables it.",
        "the signal SVD++ adds to SVD; 2 was best on both data sets, 0 loses most of the step's "
        "gain.",
        annotation=float,
    ),
    Param(
        "kernel_ridge",
        3.0,
        AnyOf(_NONE, _NONNEG),
        "ridge of the step's row fits (``None``: ``ridge``).",
        "the step's main knob: validation chose 2-5; raise it for sparser ratings.",
        annotation=float | None,
    ),
    Param(
        "n_kernel_updates",
        3,
        _COUNT,
        "updates of the learned geometry from the step's fits (their AGOP), after the "
        "``n_updates`` linear ones.",
        "2-3; each costs one more refit of every row.",
        annotation=int,
    ),
)
_KERNEL_ORIENT = replace(
    _ORIENT,
    default="items",
    constraint=Options("auto", "users", "items", "both"),
    doc="the kernel's side: ``'items'`` (users are the rows), ``'users'``, ``'auto'`` (the "
    "smaller side) or ``'both'`` (each orientation fitted, the predictions averaged with weight "
    "0.75 on the kernel over items; ``KernelRFMAlgo`` only).",
    when="'items' gave the co-rating signal its gain on validation; 'both' gains another "
    "0.001-0.005 for twice the fit time.",
)
_KERNEL_RANK = replace(
    _RANK,
    doc="form of the kernels: ``None`` dense, an int ``r`` factored (low-rank factors and "
    "Nystrom features, no ``d x d`` matrix), ``'auto'`` dense up to 4,096 feature columns and "
    "rank 128 beyond.",
)
#: Kernel RFM on ratings (``KernelRFMAlgo``, ``KernelRFM``): lin-RFM's updates, then the kernel
#: step over items with the co-rating signal.
KERNEL_RFM = ModelConfig(
    (
        *_STEP,
        _N_UPDATES,
        _RIDGE,
        _POWER,
        _KERNEL_ORIENT,
        _KERNEL_RANK,
        _BIAS_RIDGE,
        *_OPERATIONAL,
    )
)

#: IRLS-p on ratings (``IRLSAlgo``): p = 0.5, ridge 10, 4 updates were chosen like lin-RFM's
#: defaults (``python -m evaluation.choose_defaults --irls``).
IRLS = ModelConfig(
    (
        Param(
            "p",
            0.5,
            Interval(0, 1),
            "the Schatten-p quasi-norm IRLS minimises: 0 (log-det), 0.5 or 1 (nuclear norm).",
            "0.5 was best on validation; 0 is lin-RFM's power 1 with a decaying smoothing.",
            annotation=float,
        ),
        replace(_N_UPDATES, default=4, doc="IRLS reweightings (kernel updates).", when=""),
        _RIDGE,
        Param(
            "gamma0",
            1e-2,
            _POSITIVE,
            "initial smoothing, relative to lambda_max(X^T X).",
            annotation=float,
        ),
        Param("eta", 1.1, Interval(1, None), "smoothing decay per update.", annotation=float),
        Param("gamma_min", 1e-10, _NONNEG, "floor of the smoothing.", annotation=float),
        _ORIENT,
        _BIAS_RIDGE,
        # IRLS-p needs the dense kernel's eigendecomposition: this process only
        *(p for p in _OPERATIONAL if p.name != "backend"),
    )
)

#: The DataFrame face of ``LinRFM`` and ``KernelRFM``.
FRAME = ModelConfig(
    (
        Param(
            "user_col",
            "user_id",
            _COLUMN,
            "user id column of a DataFrame given to ``fit``.",
            role=OPERATIONAL,
            annotation=str,
        ),
        Param("item_col", "item_id", _COLUMN, "item id column.", role=OPERATIONAL, annotation=str),
        Param("rating_col", "rating", _COLUMN, "rating column.", role=OPERATIONAL, annotation=str),
        Param(
            "rating_scale",
            None,
            Check(_is_scale, "None or a pair (low, high) of finite numbers with low < high"),
            "``(low, high)``: ratings outside it are an error (in ``fit`` and ``fold_in``), "
            "predictions are clipped to it; ``None``: the training ratings' range.",
            role=OPERATIONAL,
            annotation=tuple[float, float] | None,
        ),
        Param(
            "clip",
            True,
            Check(lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
            "clip predictions to ``rating_scale``, or without one to the range of the training "
            "ratings (as Surprise clips to its trainset's scale); ``False``: never clip.",
            role=OPERATIONAL,
            annotation=bool,
        ),
    )
)

# ---------------------------------------------------------------------- the other models

_SWEEPS = Param(
    "n_sweeps",
    10,
    _COUNT,
    "ALS sweeps (a user half-step, then an item half-step).",
    annotation=int,
)
_VERBOSE = Param("verbose", False, _FLAG, "print progress.", role=OPERATIONAL, annotation=bool)
_FIT_SEED = Param("random_state", None, _SEED, "seed of the initialisation.", role=OPERATIONAL)

#: Biased ALS with weighted-lambda regularisation (``ALSAlgo``).
ALS = ModelConfig(
    (
        Param(
            "rank",
            50,
            Interval(1, None, integer=True),
            "rank of the factorisation.",
            "50-100 on MovieLens; more needs more ``ridge``.",
            annotation=int,
        ),
        Param(
            "ridge",
            0.12,
            _NONNEG,
            "weighted-lambda penalty of the factors (times each row's rating count).",
            "the main knob: validation chose 0.12-0.16.",
            annotation=float,
        ),
        Param("bias_ridge", 1.0, _NONNEG, "ridge penalty of the biases.", annotation=float),
        _SWEEPS,
        Param(
            "init_std",
            0.1,
            _NONNEG,
            "standard deviation of the random initial item factors.",
            annotation=float,
        ),
        Param(
            "dtype",
            "float64",
            _FLOAT_DTYPE,
            "``'float64'`` or ``'float32'``.",
            role=OPERATIONAL,
            annotation=str,
        ),
        _FIT_SEED,
        replace(_VERBOSE, doc="print the training RMSE after each sweep."),
    )
)

#: Bayesian matrix factorisation by Gibbs sampling (``BayesianMFAlgo``, myfm).
BAYESIAN_MF = ModelConfig(
    (
        Param(
            "rank",
            10,
            Interval(1, None, integer=True),
            "rank of the factors.",
            "10 and 32 were level on ml-100k and ml-latest-small; larger ranks need more sweeps.",
            annotation=int,
        ),
        replace(
            _SWEEPS,
            default=200,
            constraint=Interval(1, None, integer=True),
            doc="Gibbs sweeps (burn-in included).",
            when="100-200 on MovieLens; time is linear in it.",
        ),
        Param(
            "n_kept_samples",
            None,
            AnyOf(_NONE, Interval(1, None, integer=True)),
            "the last ``n_kept_samples`` sweeps are averaged (at most ``n_sweeps``); ``None`` "
            "keeps all but the first tenth.",
            annotation=int | None,
        ),
        Param(
            "init_std",
            0.1,
            _POSITIVE,
            "standard deviation of the initial factors.",
            annotation=float,
        ),
        Param(
            "random_state",
            None,
            AnyOf(_NONE, Interval(0, 2**31 - 1, integer=True)),
            "seed of the sampler (``None`` means 0, so fits are reproducible).",
            role=OPERATIONAL,
            annotation=int | None,
        ),
        replace(_VERBOSE, doc="show myfm's progress bar."),
    )
)

#: Bayesian timeSVD++ flipped (``BayesianSVDppAlgo``, myfm): BayesianMF's sampling parameters at
#: Rendle, Zhang & Koren (2019)'s rank 32, and the switches of its two extra kinds of features.
BAYESIAN_SVDPP = ModelConfig(
    (
        replace(
            BAYESIAN_MF["rank"],
            default=32,
            when="validation shares of ml-100k and ml-latest-small training folds chose 16 (5 "
            "folds of 10) or 32 (4) over 8, within 0.005 RMSE; 64 did worse; time is linear in "
            "it.",
        ),
    )
    + BAYESIAN_MF.params[1:4]
    + (
        Param(
            "use_time",
            True,
            _FLAG,
            "add the day of the rating (one-hot, UTC) where the trainset carries timestamps "
            "(:mod:`rfm_recsys.datasets.timestamps`); ignored where it has none.",
            "validation shares of ml-100k and ml-latest-small training folds chose it on 8 folds "
            "of 10 (by up to 0.014 RMSE); off, the model is Bayesian SVD++ flipped.",
            annotation=bool,
        ),
        Param(
            "flipped",
            True,
            _FLAG,
            "add the item's implicit set (the users who rated it in the training set) beside "
            "the user's (the items the user rated).",
            "it gained about 0.01 RMSE on both validation shares; off, the model is Bayesian "
            "(time)SVD++.",
            annotation=bool,
        ),
    )
    + BAYESIAN_MF.params[4:]
)

#: lin-RFM on implicit feedback (``ImplicitLinRFM``). Defaults (n_updates 1, ridge 20, alpha 2)
#: chosen on validation splits: ``python -m evaluation.choose_topn_defaults``.
IMPLICIT_LINRFM = ModelConfig(
    (
        replace(
            _N_UPDATES,
            default=1,
            constraint=Interval(0, 50, integer=True),
            doc="kernel updates (0 keeps ``K = I``, which only scores items already seen).",
            when="1 ranked best on validation; 2 is level on ml-latest-small.",
        ),
        replace(
            _RIDGE,
            default=20.0,
            constraint=_POSITIVE,
            doc="ridge of the row fits, in units of the kernel (mean diagonal 1).",
            when="validation chose 10-40.",
        ),
        replace(_POWER, when=""),
        Param(
            "alpha",
            2.0,
            _NONNEG,
            "an interaction of value ``v`` (a rating, a count) enters ``X`` as ``1 + alpha * v`` "
            "(implicit's ALS turns values into confidences the same way); 0 makes ``X`` binary.",
            "0.5-2 on ratings; binary data ignore it.",
            annotation=float,
        ),
        Param(
            "rank",
            "auto",
            AnyOf(Options(None, "auto"), Interval(1, None, integer=True)),
            "eigenpairs of ``X^T X`` kept: ``None`` every one (the exact solver), an int that "
            "many, ``'auto'`` every one with the exact solver and 256 with the randomized one. "
            "The directions left out share one eigenvalue, their mean.",
            "larger ranks rank a little better on large catalogues and cost time linearly.",
            annotation=int | str | None,
        ),
        Param(
            "solver",
            "auto",
            Options("auto", "exact", "randomized"),
            "``'exact'`` (``eigh`` of the smaller of ``X X^T`` and ``X^T X``), ``'randomized'`` "
            "(seeded subspace iteration from sparse products) or ``'auto'`` (exact when users or "
            "items number at most 2,000).",
            role=OPERATIONAL,
            annotation=str,
        ),
        Param(
            "n_power_passes",
            1,
            Interval(0, 20, integer=True),
            "power passes of the randomized solver (one ranks as well as two on validation).",
            role=OPERATIONAL,
            annotation=int,
        ),
        Param(
            "oversample",
            32,
            _COUNT,
            "extra columns of the randomized solver.",
            role=OPERATIONAL,
            annotation=int,
        ),
        Param("random_state", None, _SEED, "seed of the randomized solver.", role=OPERATIONAL),
        Param(
            "num_threads",
            0,
            _COUNT,
            "threads for the sparse products (0: all cores; implicit's name).",
            role=OPERATIONAL,
            annotation=int,
        ),
    )
)

#: EASE (Steck 2019) on implicit feedback (``EASE``).
EASE = ModelConfig(
    (
        Param(
            "ridge",
            500.0,
            _POSITIVE,
            "ridge of the item-item regression ``(X^T X + ridge I)^-1``.",
            "tuned per data set: validation chose about 200-500 on MovieLens.",
            annotation=float,
        ),
    )
)


#: The documented classes of each declaration, in the order of the parameter reference.
CLASSES: tuple[tuple[tuple[str, ...], ModelConfig], ...] = (
    (("rfm_recsys.LinRFMAlgo", "rfm_recsys.LinRFM"), LINRFM),
    (("rfm_recsys.KernelRFMAlgo", "rfm_recsys.KernelRFM"), KERNEL_RFM),
    (("rfm_recsys.LinRFM", "rfm_recsys.KernelRFM"), FRAME),
    (("rfm_recsys.IRLSAlgo",), IRLS),
    (("rfm_recsys.baselines.als.ALSAlgo",), ALS),
    (("rfm_recsys.baselines.bayesian_mf.BayesianMFAlgo",), BAYESIAN_MF),
    (("rfm_recsys.baselines.bayesian_svdpp.BayesianSVDppAlgo",), BAYESIAN_SVDPP),
    (("rfm_recsys.ImplicitLinRFM",), IMPLICIT_LINRFM),
    (("rfm_recsys.baselines.ease.EASE",), EASE),
)


def parameter_reference(classes=CLASSES) -> str:
    """The parameter reference (reStructuredText, for inclusion under a section of the docs) of
    the documented classes, from their configs.

    Each declaration gets a subsection (titled by the classes that use it) whose tables list its
    model parameters first, then its operational ones: name, default, allowed values, what it
    does and when to change it.
    """
    lines = [
        ".. This file is generated from rfm_recsys/config.py by",
        "   ``python docs/generate_parameters.py``; tests/test_config.py fails when it is",
        "   out of date. Do not edit it by hand. docs/parameters.rst includes it.",
        "",
    ]
    for names, config in classes:
        title = ", ".join(f":class:`~{n}`" for n in names)
        if config is FRAME:
            title += ": the DataFrame face"
        lines += [title, "~" * len(title), ""]
        for role, heading in ((MODEL, "Model parameters"), (OPERATIONAL, "Operational")):
            params = [p for p in config.params if p.role == role]
            if not params:
                continue
            lines += [
                f".. list-table:: {heading}",
                "   :header-rows: 1",
                "   :widths: 14 10 20 56",
                "",
                "   * - name",
                "     - default",
                "     - allowed",
                "     - what it does; when to change it",
            ]
            for p in params:
                what = p.doc + (f" **When to change:** {p.when}" if p.when else "")
                lines += [
                    f"   * - ``{p.name}``",
                    f"     - ``{p.default!r}``",
                    f"     - {p.constraint.describe()}",
                    f"     - {what}",
                ]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
