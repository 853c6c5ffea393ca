"""The `>>>` examples in the docstrings run and print what they show.

(`tf_rpp.data`'s examples fetch archives, so they are marked +SKIP and not listed.)
"""

import doctest
import importlib

import pytest

MODULES = [
    "tf_rpp.distill", "tf_rpp._files", "tf_rpp._optional", "tf_rpp.masks", "tf_rpp.proximal", "tf_rpp.controller",
    "tf_rpp.optimizers.masked", "tf_rpp.optimizers.rpp", "tf_rpp.optimizers.gradients",
    "tf_rpp.optimizers.validation", "tf_rpp.optimizers.distribute", "tf_rpp.optimizers.group_magnitude",
    "tf_rpp.pipeline._runs", "tf_rpp._console", "tf_rpp.selection", "tf_rpp.significance", "tf_rpp.data.tasks",
    "tf_rpp.data.files", "tf_rpp.viz", "tf_rpp.structured.groups", "tf_rpp.structured.shrink",
    "tf_rpp.pipeline.options", "tf_rpp_lite.tokenizer", "tf_rpp_lite.packing", "tf_rpp_lite.formats",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no >>> example"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see the output above)"
