"""The shared model contract (tests/model_mixin.py) run against every model class of the package.

LinRFM and KernelRFM directly; the Surprise algorithms LinRFMAlgo, KernelRFMAlgo, IRLSAlgo and
ALSAlgo through the Surprise adapter. The lin-RFM classes run twice: with the defaults (dense on
this 60 x 80 set) and with a rank-8 factored kernel; the kernel step on the factored kernel runs
the contract in tests/test_kernel_rfm.py.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from model_mixin import RATING_SCALE, EngineBaselines, ModelTestMixin, SurpriseAdapter

from rfm_recsys import ALSAlgo, IRLSAlgo, KernelRFM, KernelRFMAlgo, LinRFM, LinRFMAlgo


class TestLinRFM(EngineBaselines, ModelTestMixin):
    def make_model(self, **params):
        return LinRFM(rating_scale=RATING_SCALE, **params)

    def fit(self, model, df):
        return model.fit(df)

    def predict(self, model, users, items):
        return np.asarray(model.predict(users, items), dtype=float)

    def seed_params(self, seed):
        # the seed only matters with a validation split: exercise that path
        return {"random_state": seed, "validation_share": 0.2}

    def _inner_items(self, model, items):
        return model._item_codes(items)

    def _inner_users(self, model, users):
        return model._user_codes(users)


class TestKernelRFM(TestLinRFM):
    def make_model(self, **params):
        return KernelRFM(rating_scale=RATING_SCALE, **params)


class TestLinRFMFactored(TestLinRFM):
    def make_model(self, **params):
        return super().make_model(**{"rank": 8, **params})

    def test_the_kernel_is_factored(self, data):
        model = self.fit(self.make_model(), data.train)
        assert type(model.fit_.kernel).__name__ == "FactoredKernel"
        assert model.fit_.kernel.U.shape[1] == 8


class _SurpriseWithBaselines(EngineBaselines, SurpriseAdapter, ModelTestMixin):
    """Surprise algorithms whose ``fit_`` holds ``mu``, ``b_user``, ``b_item``."""

    def _inner_items(self, model, items):
        return np.array([model.trainset.to_inner_iid(i) for i in items])

    def _inner_users(self, model, users):
        return np.array([model.trainset.to_inner_uid(u) for u in users])


class TestLinRFMAlgo(_SurpriseWithBaselines):
    algo_class = LinRFMAlgo

    def seed_params(self, seed):
        return {"random_state": seed, "validation_share": 0.2}


class TestKernelRFMAlgo(TestLinRFMAlgo):
    algo_class = KernelRFMAlgo


class TestLinRFMAlgoFactored(TestLinRFMAlgo):
    default_params: ClassVar[dict] = {"rank": 8}

    def test_the_kernel_is_factored(self, data):
        model = self.fit(self.make_model(), data.train)
        assert type(model.fit_.kernel).__name__ == "FactoredKernel"


class TestIRLSAlgo(_SurpriseWithBaselines):
    algo_class = IRLSAlgo

    def seed_params(self, seed):
        return {"random_state": seed, "validation_share": 0.2}


class TestALSAlgo(_SurpriseWithBaselines):
    algo_class = ALSAlgo
    param_change = ("ridge", 0.5)
