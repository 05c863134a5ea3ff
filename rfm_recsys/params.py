"""scikit-learn style hyperparameter access shared by every model class of the package."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np


class ParamsMixin:
    """``get_params``/``set_params``/``__repr__`` read from the ``__init__`` signature.

    Works because every class stores its hyperparameters verbatim under their own names.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__`` (scikit-learn convention; ``deep`` is moot)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "ParamsMixin":
        """Set hyperparameters by name; unknown names raise ValueError. A fitted state is kept."""
        valid = self._param_names()
        bad = sorted(set(params) - set(valid))
        if bad:
            raise ValueError(f"invalid parameter(s) {bad} for {type(self).__name__}; valid ones are {valid}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values() if p.name != "self"
        }
        changed = []
        for k, v in self.get_params().items():
            d = defaults.get(k, inspect.Parameter.empty)
            try:
                same = bool(v == d) if not isinstance(v, np.ndarray) else False
            except Exception:  # comparisons of exotic objects: show them
                same = False
            if not same:
                changed.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

