"""The matrix-completion methods of the experiments, each with its settings fixed in advance."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from evaluation.paper.deep_linear import DLNCompletion
from evaluation.paper.problems import SUCCESS_TOL, LowRankProblem, missing_error_dense
from evaluation.paper.tracked import run_engine_tracked
from rfm_recsys.core.engine import AGOPPower, IRLSUpdate, complete_dense


@dataclass(frozen=True)
class MCMethod:
    """A matrix-completion method with all its settings fixed in advance."""

    key: str
    label: str
    kind: str  # "engine" or "dln"
    params: dict = field(default_factory=dict, hash=False, compare=False)


# Reference settings: ridge 5e-2 (the reference code's reg for entries of mean square 1),
# IRLS schedule of Mohan & Fazel with the "hard problem" eta = 1.03 (our sweep goes down to the
# information limit), gamma_min = 1e-10.
REF_LAM = 5e-2


def mc_methods(n_iter: int, dln_iter: int, tol: float = 1e-7) -> dict[str, MCMethod]:
    common = dict(n_iter=n_iter, tol=tol)
    return {
        m.key: m
        for m in [
            MCMethod(
                "linrfm-p1",
                "lin-RFM power 1 (SVD-free), lam 5e-2",
                "engine",
                dict(update=AGOPPower(1.0), lam=REF_LAM, **common),
            ),
            MCMethod(
                "linrfm-p1-decay",
                "lin-RFM power 1, lam 5e-2 / 1.03^k",
                "engine",
                dict(update=AGOPPower(1.0), lam=REF_LAM, lam_decay=1.03, lam_min=1e-10, **common),
            ),
            MCMethod(
                "linrfm-p2",
                "lin-RFM power 2 (eigh), lam 5e-2",
                "engine",
                dict(update=AGOPPower(2.0), lam=REF_LAM, **common),
            ),
            MCMethod(
                "irls-p0",
                "IRLS-0 (eigh), eta 1.03",
                "engine",
                dict(
                    update=IRLSUpdate(p=0.0, gamma0=1e-2, eta=1.03, gamma_min=1e-10),
                    lam=0.0,
                    **common,
                ),
            ),
            MCMethod(
                "irls-p1",
                "IRLS-1 (eigh), eta 1.03",
                "engine",
                dict(
                    update=IRLSUpdate(p=1.0, gamma0=1e-2, eta=1.03, gamma_min=1e-10),
                    lam=0.0,
                    **common,
                ),
            ),
            MCMethod(
                "dln-d2",
                "deep linear net, depth 2, init 1e-3",
                "dln",
                dict(depth=2, init_scale=1e-3, n_iter=dln_iter, tol=1e-6),
            ),
            MCMethod(
                "dln-d3",
                "deep linear net, depth 3, init 1e-3",
                "dln",
                dict(depth=3, init_scale=1e-3, n_iter=dln_iter, tol=1e-6),
            ),
            MCMethod(
                "dln-d2-i1e-2",
                "deep linear net, depth 2, init 1e-2",
                "dln",
                dict(depth=2, init_scale=1e-2, n_iter=dln_iter, tol=1e-6),
            ),
            MCMethod(
                "dln-d3-i1e-2",
                "deep linear net, depth 3, init 1e-2",
                "dln",
                dict(depth=3, init_scale=1e-2, n_iter=dln_iter, tol=1e-6),
            ),
        ]
    }


def run_mc_method(method: MCMethod, prob: LowRankProblem, Y: np.ndarray, mask: np.ndarray) -> dict:
    """Fit one method on one problem; returns the row for the CSV (error measured at the end)."""
    t0 = time.perf_counter()
    if method.kind == "engine":
        p = dict(method.params)
        run = run_engine_tracked(
            prob.R,
            lam=p["lam"],
            update=p["update"],
            n_iter=p["n_iter"],
            tol=p["tol"],
            lam_decay=p.get("lam_decay", 1.0),
            lam_min=p.get("lam_min", 0.0),
        )
        X = complete_dense(run.K, run.A)
        iters, stop = run.iterations, run.stop
        extra = {"final_lam": run.lams[-1], "train_residual": float("nan")}
    else:
        p = dict(method.params)
        model = DLNCompletion(random_state=prob.seed, **p).fit(prob.R)
        X = model.completed()
        iters = model.n_iter_
        stop = "tol" if model.converged_ else "cap"
        extra = {
            "final_lam": float("nan"),
            "train_residual": model.history_[-1]["rel_residual"],
            "_history": model.history_,
        }
    seconds = time.perf_counter() - t0
    err = missing_error_dense(X, Y, mask)
    return {
        "method": method.key,
        "rel_err_missing": err,
        "success": int(err < SUCCESS_TOL),
        "iterations": iters,
        "stop": stop,
        "seconds": seconds,
        "sec_per_iter": seconds / max(iters, 1),
        **extra,
    }
