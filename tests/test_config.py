"""The hyperparameter declarations: one per class, documented, and the reference built from them."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from rfm_recsys import config

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "parameters.rst"


def _class(qualname: str) -> type:
    module, _, name = qualname.rpartition(".")
    return getattr(importlib.import_module(module), name)


DOCUMENTED: dict[str, list[config.ModelConfig]] = {}
for names, cfg in config.CLASSES:
    for qualname in names:
        DOCUMENTED.setdefault(qualname, []).append(cfg)


def test_the_committed_reference_is_generated_from_the_declarations():
    # regenerate with: python docs/generate_parameters.py
    assert REFERENCE.read_text() == config.parameter_reference()


@pytest.mark.parametrize("qualname", sorted(DOCUMENTED))
def test_each_class_takes_exactly_its_documented_declarations(qualname):
    cls = _class(qualname)
    expected = [p.name for cfg in DOCUMENTED[qualname] for p in cfg.params]
    assert cls.config.names() == expected
    assert list(inspect.signature(cls).parameters) == expected
    assert cls().get_params() == cls.config.defaults()
    assert set(cls._parameter_constraints) == set(expected)


@pytest.mark.parametrize("qualname", sorted(DOCUMENTED))
def test_the_docstring_lists_the_model_parameters_first(qualname):
    cls = _class(qualname)
    doc = cls.__doc__
    model = [p for p in cls.config.params if p.role == config.MODEL]
    operational = [p for p in cls.config.params if p.role == config.OPERATIONAL]
    assert model, f"{qualname} declares no parameter that shapes the model"
    if operational:
        assert doc.index("Model parameters:") < doc.index("Operational parameters:")
    for p in cls.config.params:
        assert f"        {p.name} (" in doc, p.name


def test_every_declaration_says_what_it_does():
    for _, cfg in config.CLASSES:
        for p in cfg.params:
            assert p.role in (config.MODEL, config.OPERATIONAL), p.name
            assert p.doc.strip().endswith("."), p.name
            assert not p.when or p.when.strip().endswith("."), p.name
            assert p.constraint.accepts(p.default), (p.name, p.default)


def test_one_vocabulary():
    # the names the package retired must not come back in any declaration
    retired = {"lam", "kernel_lam", "reg", "reg_user", "reg_item", "reg_bias", "n_iter",
               "kernel_updates", "baseline_epochs", "n_epochs", "n_factors", "implicit",
               "init_stdev", "n_power_iter"}  # fmt: skip
    names = {p.name for _, cfg in config.CLASSES for p in cfg.params}
    assert not names & retired, names & retired
    # every ridge is called so, every count is n_<what>
    assert {n for n in names if "ridge" in n} == {"ridge", "kernel_ridge", "bias_ridge"}
