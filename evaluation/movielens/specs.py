"""Which algorithms the comparison runs: how each is built, tuned, ranked and when it is skipped.

One :class:`AlgoSpec` per algorithm holds everything the harness needs to know about it, so no
other module switches on an algorithm's key or class name.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A test rating at least this high is a relevant item in the top-N table.
RELEVANCE_THRESHOLD = 4.0
#: SVD++ runs by default only on data sets up to this many ratings (it is slow); ``--svdpp``.
SVDPP_MAX_RATINGS = 200_000
#: From this many ratings on a data set is "large": one 90/10 holdout by default, no curves,
#: and SVD++ is skipped even when named (its fit would take hours) unless ``--svdpp``.
LARGE_RATINGS = 5_000_000
#: BayesianMF runs by default only up to this many training ratings (ML-1M-sized takes minutes
#: per fit, ML-10M tens of minutes); ``--bayesian-mf`` lifts the limit.
BAYESIAN_MF_MAX_RATINGS = 2_000_000
#: Bayesian timeSVD++ flipped runs by default only up to this many training ratings (its
#: implicit sets make a sweep several times BayesianMF's: an ML-1M-sized fold takes about six
#: minutes); ``--bayesian-svdpp`` lifts the limit.
BAYESIAN_SVDPP_MAX_RATINGS = 1_000_000
#: Default length of the per-iteration test-RMSE curves of lin-RFM and IRLS.
CURVE_ITERS = 10
#: "Reached its final RMSE": within this relative margin of the last point of the curve.
FINAL_MARGIN = 0.01


@dataclass(frozen=True)
class DataShape:
    """Size of a training fold, what the skip rules look at."""

    n_users: int
    n_items: int
    n_ratings: int


def _linrfm(params: dict, seed: int | None) -> Any:
    from rfm_recsys.surprise_algos import LinRFMAlgo

    return LinRFMAlgo(**params, random_state=seed)


def _kernel_rfm(params: dict, seed: int | None) -> Any:
    from rfm_recsys.surprise_algos import KernelRFMAlgo

    return KernelRFMAlgo(**params, random_state=seed)


def _irls(params: dict, seed: int | None) -> Any:
    from rfm_recsys.surprise_algos import IRLSAlgo

    return IRLSAlgo(**params, random_state=seed)


def _als(params: dict, seed: int | None) -> Any:
    from rfm_recsys.baselines.als import ALSAlgo

    return ALSAlgo(**params, random_state=seed)


def _svd(params: dict, seed: int | None) -> Any:
    from surprise import SVD

    return SVD(**params, random_state=seed)


def _svdpp(params: dict, seed: int | None) -> Any:
    from surprise import SVDpp

    return SVDpp(**params, random_state=seed)


def _bayesian_mf(params: dict, seed: int | None) -> Any:
    from rfm_recsys.baselines.bayesian_mf import BayesianMFAlgo

    # myfm needs an int seed; the harness passes None when unseeded
    return BayesianMFAlgo(**params, random_state=0 if seed is None else seed)


def _myfm_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("myfm") is None:
        return "myfm is not installed: pip install 'rfm_recsys[bayes]' (or myfm)"
    return None


def _bayesian_mf_time(params: dict, shape: DataShape, args: Any) -> str | None:
    if missing := _myfm_missing():
        return missing
    if shape.n_ratings <= BAYESIAN_MF_MAX_RATINGS or getattr(args, "bayesian_mf", False):
        return None
    return (
        f"BayesianMF (Gibbs sampling, {params.get('n_sweeps', 200)} sweeps) on "
        f"{shape.n_ratings:,} training ratings would take long: name it in --algorithms "
        "with --bayesian-mf to run it anyway"
    )


def _bayesian_svdpp(params: dict, seed: int | None) -> Any:
    from rfm_recsys.baselines.bayesian_svdpp import BayesianSVDppAlgo

    # myfm needs an int seed; the harness passes None when unseeded
    return BayesianSVDppAlgo(**params, random_state=0 if seed is None else seed)


def _bayesian_svdpp_time(params: dict, shape: DataShape, args: Any) -> str | None:
    if missing := _myfm_missing():
        return missing
    if shape.n_ratings <= BAYESIAN_SVDPP_MAX_RATINGS or getattr(args, "bayesian_svdpp", False):
        return None
    return (
        f"Bayesian timeSVD++ flipped (Gibbs sampling, {params.get('n_sweeps', 200)} sweeps) on "
        f"{shape.n_ratings:,} training ratings would take long: name it in --algorithms "
        "with --bayesian-svdpp to run it anyway"
    )


def _baseline(params: dict, seed: int | None) -> Any:
    from surprise import BaselineOnly

    return BaselineOnly(bsl_options=params, verbose=False)


def _implicit_als_class() -> type:
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares


def _implicit_linrfm_class() -> type:
    from rfm_recsys import ImplicitLinRFM

    return ImplicitLinRFM


def _ease_class() -> type:
    from rfm_recsys.baselines.ease import EASE

    return EASE


def _fit_implicit_als(params: dict, train: Any, seed: int | None, threads: int) -> tuple[Any, str]:
    from rfm_recsys.ranking import fit_implicit_als

    model = fit_implicit_als(train, **params, random_state=seed, num_threads=threads)
    values = "rating-valued" if params.get("values") == "ratings" else "binarised"
    return model, f"implicit AlternatingLeastSquares ({values} train)"


def _fit_implicit_linrfm(
    params: dict, train: Any, seed: int | None, threads: int
) -> tuple[Any, str]:
    model = _implicit_linrfm_class()(**params, random_state=seed, num_threads=threads or 1)
    return model.fit(train), "ImplicitLinRFM (RecommenderBase)"


def _fit_ease(params: dict, train: Any, seed: int | None, threads: int) -> tuple[Any, str]:
    return _ease_class()(**params).fit(train), "EASE (RecommenderBase)"


def _ease_memory(params: dict, shape: DataShape, args: Any) -> str | None:
    """EASE holds a dense items x items float64 inverse, its float32 weights and a copy."""
    from rfm_recsys.core.memory import available_memory

    need = 20 * shape.n_items**2
    have = available_memory()
    if need <= have:
        return None
    return (
        f"needs about {need / 2**30:.1f} GiB for its dense {shape.n_items:,} x "
        f"{shape.n_items:,} item weights, {have / 2**30:.1f} GiB available"
    )


def _frame_ranker(name: str) -> Callable[..., tuple[Any, str]]:
    """Ranking through the model's own RecommenderBase face (``rfm_recsys.model.<name>``),
    fitted on the same training matrix with the algorithm's hyperparameters."""

    def ranker(algo: Any, params: dict, train: Any, seed: int | None) -> tuple[Any, str]:
        import rfm_recsys.model

        cls = getattr(rfm_recsys.model, name)
        names = set(cls._param_names())
        kw = {k: v for k, v in params.items() if k in names}
        if kw.get("orient") == "both":  # the frame face holds one kernel: the one over items
            kw["orient"] = "items"
        model = cls(**kw, random_state=seed)
        return model.fit(train), f"{name} (RecommenderBase)"

    return ranker


def _engine_memory(eigh: Callable[[dict], bool]) -> Callable[[dict, DataShape, Any], str | None]:
    """A skip rule for the engine's kernel: the library's own memory estimate.

    ``params`` are every hyperparameter of the model (its defaults included). A kernel rank the
    model chooses itself (``"auto"``) is left to the model, which refuses up front, with the
    figures, a fit that cannot fit (the harness then records that error).
    """

    def check(params: dict, shape: DataShape, args: Any) -> str | None:
        import numpy as np

        from rfm_recsys.core.memory import available_memory, estimate_memory
        from rfm_recsys.fitting import resolve_orientation

        orient = params.get("orient", "auto")
        # "both" fits each orientation in turn: the larger kernel is the peak
        users_are_rows = (
            shape.n_items >= shape.n_users
            if orient == "both"
            else resolve_orientation(orient, shape.n_users, shape.n_items)
        )
        n, d = (shape.n_users, shape.n_items) if users_are_rows else (shape.n_items, shape.n_users)
        rank = params.get("rank")
        if isinstance(rank, str):
            return None
        dtype = np.dtype(params.get("dtype", "float32"))
        need = estimate_memory(n, d, shape.n_ratings, dtype, needs_eigh=eigh(params), rank=rank)
        have = available_memory()
        if need <= have:
            return None
        form = f"dense {d:,} x {d:,}" if rank is None else f"rank-{rank} ({d:,} features)"
        return (
            f"needs about {need / 2**30:.1f} GiB for its {form} kernel "
            f"({'with' if eigh(params) else 'without'} eigh), {have / 2**30:.1f} GiB available"
        )

    return check


def _svdpp_time(params: dict, shape: DataShape, args: Any) -> str | None:
    if shape.n_ratings < LARGE_RATINGS or getattr(args, "svdpp", False):
        return None
    return (
        f"SVD++ on {shape.n_ratings:,} training ratings would take hours (it sums over each "
        "user's items at every step): add --svdpp to run it anyway"
    )


@dataclass(frozen=True)
class AlgoSpec:
    """How the harness builds, tunes, ranks and scores one algorithm.

    Attributes:
        key: name on the command line.
        label: name in tables and plots.
        kind: ``"rating"`` (RMSE table and, with ``--ranking``, top-N) or ``"topn"`` (top-N only).
        make: ``make(params, seed)`` returns a fresh, unfitted Surprise algorithm (rating kind).
        defaults: documented default hyperparameters (the class defaults unless stated).
        quick: overrides for ``--quick``.
        grid: ``--tune`` grid (each combination is fitted on the validation split).
        quick_grid: the grid under ``--quick --tune``.
        curve_param: the iteration-count parameter for test-RMSE-per-iteration curves.
        ranker: ``ranker(algo, params, train, seed) -> (model, label)`` a model for implicit's
            ranking metrics; None: the fitted algorithm through ``rfm_recsys.ranking.SurpriseTopN``.
        skip: ``skip(params, shape, args)`` returns why the algorithm cannot run on this data
            (memory, time), or None.
        param_class: the class whose constructor defaults :func:`effective_params` reports
            (default: the class ``make`` builds).
        options_dict: the parameters are one options dict (``defaults`` lists all of them).
        dask: ``--backend dask`` fits it on Dask (``backend="dask"``).
        fit_topn: ``fit_topn(params, train, seed, threads) -> (model, label)`` fits a top-N
            model (kind ``"topn"``) on the fold's users x items training matrix; with
            ``--tune`` its ``grid`` is searched on validation precision@10.
    """

    key: str
    label: str
    kind: str
    make: Callable[[dict, int | None], Any] | None = None
    defaults: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    quick_grid: dict = field(default_factory=dict)
    curve_param: str | None = None
    ranker: Callable[..., tuple[Any, str]] | None = None
    skip: Callable[[dict, DataShape, Any], str | None] | None = None
    param_class: Callable[[], type] | None = None
    options_dict: bool = False
    fit_topn: Callable[[dict, Any, int | None, int], tuple[Any, str]] | None = None
    dask: bool = False


_ENGINE_GRID = {"ridge": [10.0, 20.0, 40.0], "n_updates": [2, 3, 5]}
#: Label of lin-RFM (``LinRFMAlgo``); the speed summary compares it with IRLS-p.
LINRFM_LABEL = "lin-RFM"
#: Label of kernel RFM (``KernelRFMAlgo``: lin-RFM's updates, then the kernel step).
KERNEL_RFM_LABEL = "kernel RFM"
_NO_EIGH_AT_POWER_1 = _engine_memory(lambda p: float(p.get("power", 1.0)) != 1.0)

ALGORITHMS: dict[str, AlgoSpec] = {
    s.key: s
    for s in [
        # plain lin-RFM (LinRFMAlgo's defaults); its per-iteration curves are drawn
        AlgoSpec(
            "linrfm", LINRFM_LABEL, "rating", _linrfm,
            grid=_ENGINE_GRID, quick_grid={"ridge": [10.0, 20.0]}, curve_param="n_updates",
            ranker=_frame_ranker("LinRFM"), skip=_NO_EIGH_AT_POWER_1, dask=True,
        ),
        # kernel RFM (KernelRFMAlgo's defaults): lin-RFM's updates, then the kernel step (dense
        # kernel up to 4,096 items, factored beyond: no item limit)
        AlgoSpec(
            "kernel-rfm", KERNEL_RFM_LABEL, "rating", _kernel_rfm,
            grid={"kernel_ridge": [2.0, 3.0, 5.0], "bandwidth": [0.7, 1.0]},
            quick={"n_kernel_updates": 1}, quick_grid={"kernel_ridge": [2.0, 3.0]},
            ranker=_frame_ranker("KernelRFM"), skip=_NO_EIGH_AT_POWER_1, dask=True,
        ),
        AlgoSpec(
            "irls", "IRLS-p", "rating", _irls,
            grid=_ENGINE_GRID, quick_grid={"ridge": [10.0, 20.0]}, curve_param="n_updates",
            skip=_engine_memory(lambda p: True),
        ),
        AlgoSpec(
            "als", "ALS", "rating", _als, quick={"n_sweeps": 5},
            grid={"rank": [50, 100], "ridge": [0.12, 0.16, 0.24]},
            quick_grid={"ridge": [0.08, 0.12]},
        ),
        AlgoSpec(
            "svd", "SVD", "rating", _svd, quick={"n_epochs": 5},
            grid={"reg_all": [0.05, 0.1, 0.15], "lr_all": [0.01, 0.02]},
            quick_grid={"reg_all": [0.02, 0.05]},
        ),
        AlgoSpec(
            "svdpp", "SVD++", "rating", _svdpp, defaults={"cache_ratings": True},
            quick={"n_epochs": 2}, grid={"reg_all": [0.02, 0.05]},
            quick_grid={"reg_all": [0.02, 0.05]}, skip=_svdpp_time,
        ),
        AlgoSpec(
            "bmf10", "BayesianMF (myfm) rank 10", "rating", _bayesian_mf,
            defaults={"rank": 10}, quick={"n_sweeps": 40, "n_kept_samples": 30},
            grid={"n_sweeps": [100, 200], "init_std": [0.1, 0.5]},
            quick_grid={"init_std": [0.1, 0.5]}, skip=_bayesian_mf_time,
        ),
        AlgoSpec(
            "bmf32", "BayesianMF (myfm) rank 32", "rating", _bayesian_mf,
            defaults={"rank": 32}, quick={"n_sweeps": 40, "n_kept_samples": 30},
            grid={"n_sweeps": [100, 200], "init_std": [0.1, 0.5]},
            quick_grid={"init_std": [0.1, 0.5]}, skip=_bayesian_mf_time,
        ),
        # rank 32 and 200 sweeps by default (Rendle, Zhang & Koren 2019); the day of the rating
        # where the folds carry timestamps. Its grid: validation shares of ml-100k and
        # ml-latest-small folds chose rank 16 or 32 (rarely 8; 64 did worse) and the day
        AlgoSpec(
            "bsvdpp", "Bayesian timeSVD++ flipped (myfm)", "rating", _bayesian_svdpp,
            quick={"n_sweeps": 40, "n_kept_samples": 30},
            grid={"rank": [8, 16, 32], "use_time": [True, False]},
            quick_grid={"rank": [8, 16]}, skip=_bayesian_svdpp_time,
        ),
        AlgoSpec(
            "baseline", "BaselineOnly", "rating", _baseline,
            defaults={"method": "als", "reg_i": 10, "reg_u": 15, "n_epochs": 10},
            grid={"reg_u": [2, 5, 10], "reg_i": [2, 5, 10]}, quick_grid={"reg_u": [5, 15]},
            options_dict=True,
        ),
        AlgoSpec(
            "implicit-linrfm", "ImplicitLinRFM", "topn",
            grid={"n_updates": [1, 2], "ridge": [10.0, 20.0, 40.0]},
            quick_grid={"ridge": [10.0, 40.0]},
            param_class=_implicit_linrfm_class, fit_topn=_fit_implicit_linrfm,
        ),
        AlgoSpec(
            "ease", "EASE", "topn", defaults={"ridge": 500.0},
            grid={"ridge": [100.0, 200.0, 350.0, 500.0, 750.0, 1000.0]},
            quick_grid={"ridge": [200.0, 500.0]},
            param_class=_ease_class, fit_topn=_fit_ease, skip=_ease_memory,
        ),
        AlgoSpec(
            "implicit-als", "implicit-ALS", "topn",
            defaults={"factors": 100, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
            quick={"iterations": 5}, param_class=_implicit_als_class,
            grid={
                "factors": [16, 32], "regularization": [3.0, 10.0, 30.0], "alpha": [0.5],
                "values": ["ratings"],
            },
            quick_grid={"factors": [16, 32]},
            fit_topn=_fit_implicit_als,
        ),
    ]
}  # fmt: skip
RATING_ORDER = [
    "linrfm", "kernel-rfm", "bmf10", "bmf32", "bsvdpp", "irls", "als", "svd", "svdpp",
    "baseline",
]  # fmt: skip
#: Top-N models (implicit feedback): only in the top-N table, each tuned with the same budget.
TOPN_ORDER = ["implicit-linrfm", "ease", "implicit-als"]
ALIASES = {
    "lin-rfm": "linrfm", "rfm": "linrfm", "linrfmalgo": "linrfm", "plain-linrfm": "linrfm",
    "plain": "linrfm", "plain-rfm": "linrfm", "krfm": "kernel-rfm", "kernelrfm": "kernel-rfm",
    "kernel_rfm": "kernel-rfm", "kernelrfmalgo": "kernel-rfm", "irls-p": "irls",
    "irlsalgo": "irls",
    "alsalgo": "als", "svd++": "svdpp", "baselineonly": "baseline", "implicit": "implicit-als",
    "implicit_als": "implicit-als", "ials": "implicit-als", "implicitlinrfm": "implicit-linrfm",
    "implicit_linrfm": "implicit-linrfm", "irfm": "implicit-linrfm", "bmf": "bmf10",
    "bayesianmf": "bmf10", "bayesian-mf": "bmf10", "myfm": "bmf10",
    "bayesian-svdpp": "bsvdpp", "timesvdpp": "bsvdpp", "bayesiansvdppalgo": "bsvdpp",
}  # fmt: skip
#: Parameter names of earlier releases and the names that replaced them: ``--param`` with an old
#: name the algorithm does not take says which one to use.
RENAMED = {
    "lam": ("ridge",), "reg": ("ridge",), "kernel_lam": ("kernel_ridge",),
    "reg_user": ("bias_ridge",), "reg_item": ("bias_ridge",), "reg_bias": ("bias_ridge",),
    "n_iter": ("n_updates", "n_sweeps"), "kernel_updates": ("n_kernel_updates",),
    "baseline_epochs": ("n_bias_sweeps",), "implicit": ("co_rating",), "n_factors": ("rank",),
    "n_epochs": ("n_sweeps",), "init_stdev": ("init_std",), "n_power_iter": ("n_power_passes",),
}  # fmt: skip


def _named_keys(text: str, ranking: bool, notes: list[str]) -> list[str]:
    keys: list[str] = []
    for raw in text.split(","):
        k = raw.strip().lower()
        if not k:
            continue
        k = ALIASES.get(k, k)
        if k not in ALGORITHMS:
            raise SystemExit(
                f"unknown algorithm {raw.strip()!r}: choose from {', '.join(ALGORITHMS)} "
                f"(aliases: {', '.join(sorted(ALIASES))})"
            )
        if k not in keys:
            keys.append(k)
    topn = [k for k in keys if ALGORITHMS[k].kind == "topn"]
    if topn and not ranking:
        labels = ", ".join(ALGORITHMS[k].label for k in topn)
        notes.append(
            f"{labels} model implicit feedback and appear only in the top-N table: add --ranking"
        )
        keys = [k for k in keys if k not in topn]
    return keys


def resolve_algorithms(
    text: str | None, n_ratings: int, ranking: bool, svdpp: bool
) -> tuple[list[str], list[str]]:
    """The algorithm keys to run (in table order) and notes about what was left out."""
    notes: list[str] = []
    if text:
        keys = _named_keys(text, ranking, notes)
    else:
        keys = list(RATING_ORDER)
        if not svdpp and n_ratings > SVDPP_MAX_RATINGS:
            keys.remove("svdpp")
            notes.append(
                f"SVD++ left out ({n_ratings:,} ratings > {SVDPP_MAX_RATINGS:,}; it is slow): "
                "add --svdpp or name it in --algorithms"
            )
        if ranking:
            keys += TOPN_ORDER
    order = RATING_ORDER + TOPN_ORDER
    return sorted(keys, key=order.index), notes


def skip_reasons(keys: list[str], params: dict[str, dict], shape: DataShape, args: Any) -> dict:
    """``{key: reason}`` for the algorithms that cannot run on data of this shape."""
    out = {}
    for k in keys:
        rule = ALGORITHMS[k].skip
        reason = rule(effective_params(k, params[k]), shape, args) if rule is not None else None
        if reason:
            out[k] = reason
    return out


def make_algo(key: str, params: dict, seed: int | None) -> Any:
    """A fresh, unfitted algorithm (Surprise ``AlgoBase``) with these hyperparameters."""
    spec = ALGORITHMS[key]
    if spec.make is None:
        raise ValueError(f"{key!r} is not a rating algorithm")
    return spec.make(dict(params), seed)


def effective_params(key: str, params: dict) -> dict:
    """Every hyperparameter the algorithm runs with: its constructor's defaults, then ``params``."""
    spec = ALGORITHMS[key]
    if spec.options_dict:  # e.g. Surprise's bsl_options: no constructor defaults to read
        return {**spec.defaults, **params}
    cls = spec.param_class() if spec.param_class is not None else type(make_algo(key, {}, None))
    skip = {"self", "random_state", "verbose", "num_threads"}
    out = {
        n: p.default
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if n not in skip and p.default is not inspect.Parameter.empty and not callable(p.default)
    }
    out.update(params)
    return out


def algorithm_params(key: str, quick: bool, overrides: dict[str, dict]) -> dict:
    """Defaults, then ``--quick`` overrides, then ``--param`` overrides."""
    spec = ALGORITHMS[key]
    p = dict(spec.defaults)
    if quick:
        p.update(spec.quick)
    p.update(overrides.get(key, {}))
    return p


def parse_param_overrides(items: list[str] | None) -> dict[str, dict]:
    """``["linrfm.ridge=10", "als.rank=100"]`` -> ``{"linrfm": {"ridge": 10}, "als": {...}}``.

    A name of an earlier release that the algorithm no longer takes (``lam``, ``n_iter``...)
    is refused with the name that replaced it (:data:`RENAMED`).
    """
    out: dict[str, dict] = {}
    for item in items or []:
        try:
            lhs, value = item.split("=", 1)
            algo, name = lhs.split(".", 1)
        except ValueError:
            raise SystemExit(
                f"--param expects ALGO.NAME=VALUE (e.g. linrfm.ridge=10), got {item!r}"
            ) from None
        algo = ALIASES.get(algo.strip().lower(), algo.strip().lower())
        if algo not in ALGORITHMS:
            raise SystemExit(f"--param {item!r}: unknown algorithm {algo!r}")
        name = name.strip()
        if name in RENAMED:
            names = _parameter_names(algo)
            if name not in names:
                new = [n for n in RENAMED[name] if n in names] or list(RENAMED[name])
                raise SystemExit(
                    f"--param {item!r}: {ALGORITHMS[algo].label} has no parameter {name!r}: "
                    f"it is called {' or '.join(new)} now"
                )
        try:
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            v = value
        out.setdefault(algo, {})[name] = v
    return out


def _parameter_names(key: str) -> set[str]:
    """The hyperparameters the algorithm's constructor takes (its options for an options dict)."""
    spec = ALGORITHMS[key]
    if spec.options_dict:
        return set(spec.defaults)
    cls = spec.param_class() if spec.param_class is not None else type(make_algo(key, {}, None))
    return set(inspect.signature(cls.__init__).parameters) - {"self"}
