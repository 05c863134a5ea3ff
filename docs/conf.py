"""Sphinx configuration of the rfm_recsys documentation site.

Built by ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``): every
warning, a broken cross-reference included (``nitpicky``), fails the build. The build never
touches the network: no intersphinx, so references to other libraries' types are ignored by
``nitpick_ignore_regex`` below (external libraries only; a reference into ``rfm_recsys`` must
resolve).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package and evaluation/, also without an installed copy
os.environ.setdefault("MPLBACKEND", "Agg")

import rfm_recsys  # noqa: E402

project = "rfm_recsys"
author = "rfm_recsys developers"
copyright = "rfm_recsys developers"
release = rfm_recsys.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax from the package, not a CDN: the site works offline
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# reference/parameters.rst is generated from rfm_recsys/config.py and included by
# parameters.rst, not a page of its own
exclude_patterns = ["_build", "_templates", "reference/parameters.rst", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --------------------------------------------------------------------------- cross-references

nitpicky = True
# Types of other libraries and of the standard library: without intersphinx (CI has no network)
# Sphinx cannot resolve them, and they are not ours to document. Nothing of rfm_recsys is here.
_EXTERNAL = (
    r"(numpy|np|scipy|sp|pandas|pd|surprise|implicit|dask|dd|distributed|threadpoolctl|tqdm"
    r"|matplotlib|typing|collections|os|pathlib|inspect|numbers|io|concurrent)(\..+)?"
)
_BUILTINS = (
    r"(int|float|str|bytes|bool|complex|object|type|list|dict|tuple|set|frozenset|None"
    r"|Ellipsis|NotImplemented|Any|Callable|Sequence|Mapping|Iterable|Iterator|Literal"
    r"|Path|PathLike|ArrayLike|Exception|BaseException|ValueError|TypeError|KeyError"
    r"|IndexError|OSError|IOError|FileNotFoundError|MemoryError|RuntimeError|UserWarning"
    r"|Warning|NotImplementedError|LookupError|AttributeError)"
)
# Surprise's dataset classes, as the annotations of rfm_recsys.datasets name them unqualified
_SURPRISE_SHORT = r"(Dataset|DatasetAutoFolds|DatasetUserFolds|Trainset|Prediction|AlgoBase)"
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (r"py:.*", _BUILTINS),
    (r"py:.*", _SURPRISE_SHORT),
]

# --------------------------------------------------------------------------- API pages

autosummary_generate = True
autosummary_imported_members = False
# the module pages of "Internals" (docs/_templates/autosummary/module.rst) list a module's
# __all__ (a package's names included); without __all__, the public names it defines
autosummary_ignore_module_all = False
# Names a module page lists that the reference documents under another path, the one users
# import: the module page links to that entry instead of giving the object a second page.
autosummary_context = {
    "api_documented_as": {
        "rfm_recsys.params": {"InvalidParameterError": "rfm_recsys.InvalidParameterError"},
        "rfm_recsys.checks": {"RatingsError": "rfm_recsys.RatingsError"},
        "rfm_recsys.model.rating_model": {
            "NotFittedError": "rfm_recsys.NotFittedError",
            "UnknownIdError": "rfm_recsys.UnknownIdError",
        },
        "rfm_recsys.core.engine": {
            "AGOPPower": "rfm_recsys.core.updates.AGOPPower",
            "FeatureUpdate": "rfm_recsys.core.updates.FeatureUpdate",
            "IRLSUpdate": "rfm_recsys.core.updates.IRLSUpdate",
        },
        "rfm_recsys.fileformat": {"ModelFileError": "rfm_recsys.ModelFileError"},
        "rfm_recsys.model.persistence": {"ModelFileError": "rfm_recsys.ModelFileError"},
        "rfm_recsys.core.memory": {"EngineMemoryError": "rfm_recsys.EngineMemoryError"},
        "rfm_recsys.model.base": {
            "NotFittedError": "rfm_recsys.NotFittedError",
            "UnknownIdError": "rfm_recsys.UnknownIdError",
        },
        "rfm_recsys.implicit_feedback.base": {"NotFittedError": "rfm_recsys.NotFittedError"},
    }
}
# no "show-inheritance": the models' bases are the package's internal mixins and Surprise's or
# implicit's base classes; the user guide says which contract each class follows
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    # the ranking methods every model inherits from the package's own base classes are
    # documented; those of Surprise's AlgoBase and datasets and implicit's RecommenderBase are
    # theirs (as are list's, which a timed testset is)
    "inherited-members": "AlgoBase, RecommenderBase, Dataset, DatasetAutoFolds, DatasetUserFolds, "
    "list, object, Exception, BaseException",
}
autodoc_member_order = "groupwise"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autoclass_content = "class"
autodoc_preserve_defaults = True

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# "Attributes:" as fields of the class entry: autodoc documents dataclass fields as members, and
# attribute directives from the docstring would describe them a second time
napoleon_use_ivar = True
# makes napoleon write a trailing underscore as "\_": the fitted attributes (``fit_``,
# ``history_``...) of an "Attributes:" section keep their underscore in the rendered field list
# instead of turning into a reference. (Also strips doubled backslashes in signatures; the
# package's signatures have none.)
strip_signature_backslash = True
# the class docstrings written from rfm_recsys/config.py put the parameters that shape the model
# first and the operational ones after, each in a section of its own, rendered as "Parameters"
napoleon_custom_sections = [
    ("Model parameters", "params_style"),
    ("Operational parameters", "params_style"),
]

# --------------------------------------------------------------------------- Markdown pages

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --------------------------------------------------------------------------- HTML

html_theme = "pydata_sphinx_theme"
html_title = f"rfm_recsys {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "getting_started": []}
