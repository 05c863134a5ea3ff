"""Hyperparameter access and checking shared by every model class of the package.

Each class stores its ``__init__`` arguments verbatim (Surprise's and scikit-learn's contract) and
declares what each may hold in a class attribute ``_parameter_constraints``; ``fit`` calls
``ParamsMixin._validate_params`` first, so a bad value is reported by name, with the value and
the allowed range, before any work starts.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self


class InvalidParameterError(ValueError, TypeError):
    """A hyperparameter has a value or type outside its allowed range or choices.

    A ``ValueError`` and a ``TypeError`` at once, as scikit-learn's equivalent, so callers that
    catch either keep working.
    """


class Constraint:
    """What one hyperparameter may hold. ``describe()`` is used in error messages."""

    def accepts(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval(Constraint):
    """A real (or integer, with ``integer=True``) number in ``[low, high]``.

    ``low``/``high`` of ``None`` leave that side open-ended; ``closed`` is ``"both"``,
    ``"left"``, ``"right"`` or ``"neither"``. NaN is never accepted; infinity only where the
    interval reaches it (it never does when ``high`` is finite or ``None`` with ``finite``).
    """

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    integer: bool = False
    finite: bool = True

    def accepts(self, value: Any) -> bool:
        if not (_is_integer(value) if self.integer else _is_real(value)):
            return False
        try:
            v = float(value)
        except OverflowError:  # an int beyond float range: compare as an infinity
            v = float("inf") if value > 0 else float("-inf")
        if v != v or (self.finite and v in (float("inf"), float("-inf"))):
            return False
        open_low = self.closed in ("right", "neither")
        open_high = self.closed in ("left", "neither")
        below = self.low is not None and (v < self.low or (v == self.low and open_low))
        above = self.high is not None and (v > self.high or (v == self.high and open_high))
        return not (below or above)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite real number"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        if self.low is None and self.high is None:
            return kind
        if self.high is None:
            op = ">=" if left == "[" else ">"
            return f"{kind} {op} {_fmt(self.low)}"
        if self.low is None:
            op = "<=" if right == "]" else "<"
            return f"{kind} {op} {_fmt(self.high)}"
        return f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"


def _fmt(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of values (strings, ``None``, booleans...), compared with ``==``."""

    values: tuple

    def __init__(self, *values: Any):
        object.__setattr__(self, "values", tuple(values))

    def accepts(self, value: Any) -> bool:
        # bool is an int: True must not pass for 1 unless it is listed as such
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Check(Constraint):
    """A predicate with its own description, for the rare parameter no other constraint fits."""

    predicate: Callable[[Any], bool]
    description: str

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    def describe(self) -> str:
        return self.description


@dataclass(frozen=True)
class AnyOf(Constraint):
    """Accepts what any of its constraints accepts (e.g. ``None`` or a positive number)."""

    options: tuple[Constraint, ...]

    def __init__(self, *options: Constraint):
        object.__setattr__(self, "options", tuple(options))

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.options)

    def describe(self) -> str:
        return " or ".join(c.describe() for c in self.options)


def validate_params(owner: str, params: dict[str, Any], constraints: dict[str, Constraint]):
    """Raise :class:`InvalidParameterError` for the first parameter its constraint rejects."""
    for name, constraint in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if not constraint.accepts(value):
            raise InvalidParameterError(
                f"{owner}: {name} must be {constraint.describe()}, got {value!r}"
                f"{'' if _is_real(value) or value is None else f' ({type(value).__name__})'}"
            )


class ParamsMixin:
    """``get_params``/``set_params``/``__repr__`` read from the ``__init__`` signature, and
    ``_validate_params`` against the class's ``_parameter_constraints``.

    Works because every class stores its hyperparameters verbatim under their own names.
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {}

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

    def set_params(self, **params: Any) -> Self:
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

    def _validate_params(self) -> None:
        """Check every hyperparameter against ``_parameter_constraints`` (call first in fit)."""
        validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
