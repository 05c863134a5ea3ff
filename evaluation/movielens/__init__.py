"""Compare lin-RFM and kernel RFM with Bayesian MF, IRLS-p, ALS and Surprise's algorithms on
MovieLens.

``python -m evaluation.movielens --help`` lists the options.

Every algorithm is fitted on identical folds (Surprise ``KFold(n_splits, random_state=seed)``,
ml-100k's official u1..u5 with ``--folds official``, or one 90/10 split with ``--folds holdout``,
the default from 5 million ratings on) and scored on the fold's test ratings: RMSE and MAE
(``surprise.accuracy``), fit and test time (``time.perf_counter``), and the peak memory of the
fit. With ``--ranking`` a top-N table is added: precision@10, MAP@10 and NDCG@10 computed by
implicit's own ``implicit.evaluation.ranking_metrics_at_k`` for every model (relevant = test
rating >= 4; candidates = every item the user has not rated in the training fold). Algorithms
that cannot fit the data (a dense kernel beyond the available memory, SVD++ on a large set) are
skipped with the reason, printed and written into the report. ``--synthetic NAME`` runs the
same comparison on generated ratings of a MovieLens release's shape.

Peak memory: each (algorithm, fold) runs in a fresh worker process (a ``ProcessPoolExecutor``
with one task per child, forked from a preloaded forkserver), so the figure is that fit's alone:
the highest resident set size during the fit (the larger of ``getrusage``'s ``ru_maxrss`` when it
grew during the fit and an RSS sampler thread reading ``/proc/self/statm`` every 2 ms) minus
the RSS when the fit started. Unlike ``tracemalloc`` this sees BLAS and other C allocations.

Timing: one fit at a time by default (``--n-jobs``), each with one BLAS thread
(``--blas-threads``, as Surprise's algorithms are single-threaded; measured here, OpenBLAS with
two threads on a 2-core machine shared with another busy process ran a 943 x 943 ``eigh`` 10-30x
slower than with one), after a warm-up of the first BLAS/LAPACK calls.

Results go to ``results/<dataset>/<run-id>/``: results.csv (one row per algorithm and fold),
results.json (everything, with the learning curves), report.md (tables, protocol, machine,
package versions, exact command) and PNG plots. Run ``python -m evaluation.movielens --help``
for the options.

Modules: :mod:`~evaluation.movielens.specs` (the algorithms, their parameters, grids and skip
rules), :mod:`~evaluation.movielens.data` (data and folds), :mod:`~evaluation.movielens.worker`
(one fit in a fresh process), :mod:`~evaluation.movielens.runner` (the worker pool and progress
bars), :mod:`~evaluation.movielens.report` and :mod:`~evaluation.movielens.plots` (tables, files,
figures), :mod:`~evaluation.movielens.options` and :mod:`~evaluation.movielens.cli` (the command).
"""

from evaluation.common import PeakRSS
from evaluation.movielens.cli import main
from evaluation.movielens.data import (
    DEFAULT_DATA_HOME,
    REPO_ROOT,
    load_data,
    release_shape,
    resolve_data_home,
)
from evaluation.movielens.options import build_parser, parse_args
from evaluation.movielens.specs import (
    ALGORITHMS,
    DataShape,
    parse_param_overrides,
    resolve_algorithms,
    skip_reasons,
)
from evaluation.movielens.worker import time_to_final, validation_split

__all__ = [
    "ALGORITHMS", "DEFAULT_DATA_HOME", "REPO_ROOT", "DataShape", "PeakRSS", "build_parser",
    "load_data", "main", "parse_args", "parse_param_overrides", "release_shape",
    "resolve_algorithms", "resolve_data_home", "skip_reasons", "time_to_final",
    "validation_split",
]  # fmt: skip
