"""One declaration per model family: hyperparameter names, defaults, constraints, docs, engine use.

Every user-facing class takes its hyperparameters from one :class:`ModelConfig` (LensKit keeps
one config class per model family the same way): :func:`with_config` writes the class's
``__init__`` from it, with an explicit :class:`inspect.Signature`, so ``inspect.signature``,
``get_params`` and Surprise's ``GridSearchCV`` see ordinary named parameters stored verbatim,
while the list itself exists only here. The fitting code maps the stored values to the engine
through :meth:`ModelConfig.fit_kwargs` instead of reading attributes by name.

Families: :data:`LINRFM` (``LinRFMAlgo`` and ``LinRFM``), :data:`IRLS` (``IRLSAlgo``),
:data:`ALS` (``ALSAlgo``) and :data:`FRAME` (the DataFrame columns and rating scale of
``LinRFM``).
"""

from __future__ import annotations

import inspect
import numbers
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .core.engine import AGOPPower, FeatureUpdate, IRLSUpdate
from .params import AnyOf, Check, Constraint, Interval, Options

__all__ = [
    "ALS",
    "FRAME",
    "IRLS",
    "KERNEL_RFM",
    "KERNEL_RFM_FACTORED",
    "LINRFM",
    "PLAIN_LINRFM",
    "ModelConfig",
    "Param",
    "with_config",
]


@dataclass(frozen=True)
class Param:
    """One hyperparameter.

    Attributes:
        name: the ``__init__`` argument and the attribute it is stored under.
        default: its default value.
        constraint: what it may hold (checked at the start of ``fit``).
        doc: one line for the class docstring.
        fit_arg: the keyword of :func:`~rfm_recsys.core.fitting.fit_ratings` it is passed as,
            or ``None`` when the class uses it otherwise (input checks, the feature update).
        annotation: type hint shown by ``inspect.signature``.
    """

    name: str
    default: Any
    constraint: Constraint
    doc: str
    fit_arg: str | None = None
    annotation: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class ModelConfig:
    """The ordered hyperparameters of one model family and how they reach the engine.

    Attributes:
        params: in ``__init__`` order (positional calls keep working).
        update: builds the engine's feature update from the parameter values, or ``None``.
    """

    params: tuple[Param, ...]
    update: Callable[[Mapping[str, Any]], FeatureUpdate] | None = None

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def constraints(self) -> dict[str, Constraint]:
        return {p.name: p.constraint for p in self.params}

    def with_defaults(self, **defaults: Any) -> ModelConfig:
        """The same family with other defaults (e.g. IRLS's ``n_iter``)."""
        unknown = set(defaults) - set(self.names())
        if unknown:
            raise KeyError(f"not parameters of this config: {sorted(unknown)}")
        params = tuple(
            replace(p, default=defaults[p.name]) if p.name in defaults else p for p in self.params
        )
        return replace(self, params=params)

    def __add__(self, other: ModelConfig) -> ModelConfig:
        """Both parameter lists (this one first); the feature update of whichever has one."""
        return ModelConfig(self.params + other.params, self.update or other.update)

    def fit_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Keywords of :func:`~rfm_recsys.core.fitting.fit_ratings` from stored values."""
        out = {p.fit_arg: values[p.name] for p in self.params if p.fit_arg is not None}
        if "dtype" in out:
            out["dtype"] = np.dtype(out["dtype"])
        if "progress" in out:
            out["progress"] = bool(out["progress"])
        if self.update is not None:
            out["update"] = self.update(values)
        return out

    def signature(self) -> inspect.Signature:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature(
            [
                inspect.Parameter(p.name, kind, default=p.default, annotation=p.annotation)
                for p in self.params
            ]
        )

    def doc_section(self) -> str:
        lines = ["", "    Hyperparameters (defaults in the signature):"]
        for p in self.params:
            lines += textwrap.wrap(
                f"{p.name}: {p.doc}",
                width=96,
                initial_indent=" " * 8,
                subsequent_indent=" " * 12,
            )
        return "\n".join(lines) + "\n"


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
        cls.__doc__ = (cls.__doc__ or "") + config.doc_section()
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


def _agop(values: Mapping[str, Any]) -> FeatureUpdate:
    return AGOPPower(power=values["power"], normalize="diag")


def _irls(values: Mapping[str, Any]) -> FeatureUpdate:
    return IRLSUpdate(
        p=values["p"], gamma0=values["gamma0"], eta=values["eta"], gamma_min=values["gamma_min"]
    )


# The defaults (n_iter 2, lam 10, power 1, bias penalties 2) were chosen on validation shares of
# ml-100k and ml-latest-small training folds: ``python -m evaluation.choose_defaults``.
_N_ITER = Param("n_iter", 2, _COUNT, "kernel updates (the AGOP steps).", "n_iter", int)
_LAM = Param(
    "lam",
    10.0,
    _NONNEG,
    "ridge penalty of the row fits, relative to the kernel's unit mean diagonal.",
    "lam",
    float,
)
_POWER = Param(
    "power",
    1.0,
    _POSITIVE,
    "exponent of the AGOP; 1 needs no eigendecomposition, any other value an ``eigh`` of a "
    "``d x d`` matrix. Reference code's alpha = power / 2.",
    annotation=float,
)
_SHARED = (
    Param(
        "orient",
        "auto",
        Options("auto", "users", "items"),
        "the feature (kernel) side: ``'auto'`` (the smaller one), ``'users'`` or ``'items'``.",
        "orient",
        str,
    ),
    Param("reg_user", 2.0, _NONNEG, "ridge penalty of the user biases.", "reg_user", float),
    Param("reg_item", 2.0, _NONNEG, "ridge penalty of the item biases.", "reg_item", float),
    Param(
        "baseline_epochs",
        10,
        _COUNT,
        "alternating sweeps of the bias fit.",
        "baseline_epochs",
        int,
    ),
    Param("dtype", "float32", _FLOAT_DTYPE, "``'float32'`` or ``'float64'``.", "dtype", str),
    Param(
        "tol",
        None,
        AnyOf(_NONE, _NONNEG),
        "stop early once the kernel's relative change falls below it.",
        "tol",
        float | None,
    ),
    Param(
        "validation_share",
        0.0,
        Interval(0, 1, closed="left"),
        "share of the training ratings held out for early stopping on validation RMSE (then "
        "refit on all with the best iteration count); 0 disables it.",
        "validation_share",
        float,
    ),
    Param(
        "patience",
        2,
        Interval(1, None, integer=True),
        "iterations without validation improvement before stopping.",
        "patience",
        int,
    ),
    Param(
        "duplicates",
        "raise",
        Options("raise", "mean", "last"),
        "repeated (user, item) pairs: ``'raise'``, ``'mean'`` or ``'last'``.",
        annotation=str,
    ),
    Param("random_state", None, _SEED, "seed of the validation split.", "random_state"),
    Param(
        "max_memory",
        None,
        AnyOf(_NONE, _POSITIVE),
        "refuse fits whose estimated peak memory exceeds this many bytes.",
        "max_memory",
        int | None,
    ),
    Param("verbose", False, _FLAG, "show a progress bar.", "progress", bool),
)

# "auto" was chosen on validation shares of training folds (``python -m evaluation.choose_rank``)
# and keeps every MovieLens release up to ML-32M within this machine's memory. With the kernel
# step on, "auto" keeps the dense kernel up to 4096 columns (core.kernels.KERNEL_DENSE_MAX_D).
_RANK = Param(
    "rank",
    "auto",
    AnyOf(Options(None, "auto"), Interval(1, None, integer=True)),
    "form of the kernel: ``None`` is the dense ``d x d`` matrix, an int ``r`` the factored "
    "``U diag(s) U^T`` with ``U`` ``d x r`` (time and memory linear in ``d``, predictions in "
    "O(r)); ``'auto'`` is rank 128 when the feature side has more than 4,096 columns (256 "
    "without the kernel step), else dense.",
    "rank",
    int | str | None,
)

_BACKEND = Param(
    "backend",
    "threads",
    Options("threads", "dask"),
    "``'threads'`` (this process) or ``'dask'`` (the current ``dask.distributed`` client, else a "
    "temporary ``LocalCluster``; needs the ``dask`` extra).",
    annotation=str,
)

#: lin-RFM on ratings (``LinRFMAlgo``, ``LinRFM``).
# The kernel step after the AGOP updates (rfm_recsys.core.kernel_rfm): the kernel over items
# with the co-rating signal, a Gaussian kernel over the learned geometry and both orientations
# averaged were each kept because validation shares of ml-100k and ml-latest-small training
# folds said so: ``python -m evaluation.explore_kernel_rfm`` (evaluation/kernel_rfm_experiments.md).
# It is on by default with the settings chosen there (F*: Gaussian, bandwidth 0.7, kernel_lam 3,
# implicit 2, 3 kernel updates, the kernel over items; section 9); PLAIN_LINRFM switches it off.
_KERNEL = (
    Param(
        "kernel",
        "gaussian",
        Options("linear", "gaussian", "laplace"),
        "kernel of the row fits over the learned geometry ``M``: ``'linear'`` (``M`` itself, "
        "plain lin-RFM), ``'gaussian'`` ``n_j n_k exp((cos_jk - 1) / h^2)`` or ``'laplace'`` "
        "``n_j n_k exp(-sqrt(2 - 2 cos_jk) / h)``, with ``n_j = sqrt(M_jj)`` and ``cos_jk`` the "
        "cosine of features ``j`` and ``k`` in ``M``.",
        annotation=str,
    ),
    Param("bandwidth", 0.7, _POSITIVE, "``h`` of the radial kernels.", annotation=float),
    Param(
        "implicit",
        2.0,
        _NONNEG,
        "weight of the co-rating matrix (who rated what, mean diagonal 1) added to ``M`` for "
        "the kernel step; 0 disables it.",
        annotation=float,
    ),
    Param(
        "kernel_updates",
        3,
        _COUNT,
        "AGOP updates with the kernel step's kernel, after the ``n_iter`` linear ones.",
        annotation=int,
    ),
    Param(
        "kernel_lam",
        3.0,
        AnyOf(_NONE, _NONNEG),
        "ridge of the row fits in the kernel step (None: ``lam``).",
        annotation=float | None,
    ),
)
#: Plain lin-RFM, the kernel step switched off: ``LinRFMAlgo(**PLAIN_LINRFM)`` is the library's
#: default model before the kernel step became the default (orient ``"auto"``, linear kernel),
#: parameter for parameter. Also what ``backend="dask"`` fits (it has no kernel step). With
#: another side: ``LinRFMAlgo(**{**PLAIN_LINRFM, "orient": "items"})``.
PLAIN_LINRFM = {
    "orient": "auto",
    "kernel": "linear",
    "bandwidth": 1.0,
    "implicit": 0.0,
    "kernel_updates": 0,
    "kernel_lam": None,
}
#: The defaults of ``LinRFMAlgo`` and ``LinRFM``, spelled out: the kernel step over items with the
#: co-rating signal and a Gaussian kernel over the learned geometry's angles, the settings F*
#: chosen by ``python -m evaluation.explore_kernel_rfm`` on validation shares of folds 0 and 1
#: of ml-100k and ml-latest-small (``evaluation/kernel_rfm_experiments.md``, section 9): best
#: there for both the dense and the factored kernel, about 0.025 validation RMSE ahead of plain
#: lin-RFM. ``rank="auto"`` takes the dense kernel up to 4,096 items and the factored one
#: beyond (:data:`rfm_recsys.core.kernels.KERNEL_DENSE_MAX_D`). Add ``orient="both"``
#: (``LinRFMAlgo`` only) for both sides.
KERNEL_RFM = {
    "orient": "items",
    "rank": "auto",
    "kernel": "gaussian",
    "bandwidth": 0.7,
    "implicit": 2.0,
    "kernel_updates": 3,
    "kernel_lam": 3.0,
}
#: The default kernel step forced onto the factored kernel (rank 128; no items x items matrix
#: is formed, :mod:`rfm_recsys.core.kernel_rfm_factored`) whatever the number of items: on
#: ml-latest-small (9,724 items, where ``"auto"`` takes it anyway) 4.5 times faster than the
#: dense step and 0.004 behind it on validation shares; on ml-100k 0.001-0.002 behind and
#: slower (section 9 of ``evaluation/kernel_rfm_experiments.md``).
KERNEL_RFM_FACTORED = {**KERNEL_RFM, "rank": 128}
_ORIENT = next(p for p in _SHARED if p.name == "orient")
_LINRFM_ORIENT = replace(
    _ORIENT,
    default="items",
    constraint=Options("auto", "users", "items", "both"),
    doc="the feature (kernel) side: ``'auto'`` (the smaller side), ``'items'`` (users are the "
    "rows), ``'users'`` or ``'both'`` (each orientation fitted, the predictions averaged with "
    "weight 0.75 on the kernel over items; ``LinRFMAlgo`` only).",
)
LINRFM = ModelConfig(
    (
        _N_ITER,
        _LAM,
        _POWER,
        *(_LINRFM_ORIENT if p is _ORIENT else p for p in _SHARED),
        _RANK,
        *_KERNEL,
        _BACKEND,
    ),
    update=_agop,
)

#: IRLS-p on ratings (``IRLSAlgo``): p = 0.5, lam = 10, 4 iterations were chosen like lin-RFM's
#: defaults (``python -m evaluation.choose_defaults --irls``).
IRLS = ModelConfig(
    (
        Param("p", 0.5, Interval(0, 1), "0 (log-det), 0.5 or 1 (nuclear norm).", annotation=float),
        replace(_N_ITER, default=4, doc="IRLS iterations (kernel updates)."),
        _LAM,
        Param(
            "gamma0",
            1e-2,
            _POSITIVE,
            "initial smoothing, relative to lambda_max(X^T X).",
            annotation=float,
        ),
        Param("eta", 1.1, Interval(1, None), "smoothing decay per iteration.", annotation=float),
        Param("gamma_min", 1e-10, _NONNEG, "floor of the smoothing.", annotation=float),
        *_SHARED,
    ),
    update=_irls,
)

#: The DataFrame face of ``LinRFM``.
FRAME = ModelConfig(
    (
        Param(
            "user_col",
            "user_id",
            _COLUMN,
            "user id column of a DataFrame given to ``fit``.",
            annotation=str,
        ),
        Param("item_col", "item_id", _COLUMN, "item id column.", annotation=str),
        Param("rating_col", "rating", _COLUMN, "rating column.", annotation=str),
        Param(
            "rating_scale",
            None,
            Check(_is_scale, "None or a pair (low, high) of finite numbers with low < high"),
            "``(low, high)``: ratings outside it are an error, predictions are clipped to it.",
            annotation=tuple[float, float] | None,
        ),
        Param(
            "clip",
            True,
            Check(lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
            "clip predictions to ``rating_scale``, or without one to the range of the training "
            "ratings (as Surprise clips to its trainset's scale); ``False``: never clip.",
            annotation=bool,
        ),
    )
)

#: Biased ALS with weighted-lambda regularisation (``ALSAlgo``).
ALS = ModelConfig(
    (
        Param(
            "n_factors",
            50,
            Interval(1, None, integer=True),
            "rank of the factorisation.",
            annotation=int,
        ),
        Param("reg", 0.12, _NONNEG, "weighted-lambda penalty of the factors.", annotation=float),
        Param("reg_bias", 1.0, _NONNEG, "ridge penalty of the biases.", annotation=float),
        Param(
            "n_epochs",
            10,
            _COUNT,
            "ALS sweeps (user half-step, then item half-step).",
            annotation=int,
        ),
        Param(
            "init_std",
            0.1,
            _NONNEG,
            "standard deviation of the random initial item factors.",
            annotation=float,
        ),
        Param("dtype", "float64", _FLOAT_DTYPE, "``'float64'`` or ``'float32'``.", annotation=str),
        Param("random_state", None, _SEED, "seed of the initialisation."),
        Param(
            "verbose", False, _FLAG, "print the training RMSE after each epoch.", annotation=bool
        ),
    )
)
