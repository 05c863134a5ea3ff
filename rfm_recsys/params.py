"""scikit-learn style hyperparameter access shared by every model class of the package."""

from __future__ import annotations

import inspect
from typing import Any


class ParamsMixin:
    """``get_params``/``set_params``/``__repr__`` read from the ``__init__`` signature.

    Works because every class stores its hyperparameters verbatim under their own names.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__`` (scikit-learn convention; ``deep`` is moot)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> ParamsMixin:
        """Set hyperparameters by name; unknown names raise ValueError. A fitted state is kept."""
        valid = self._param_names()
        for key in params:
            if key not in valid:
                raise ValueError(
                    f"invalid parameter {key!r} for {type(self).__name__}; valid parameters are "
                    f"{', '.join(valid)}"
                )
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
