"""Every module-level name an exported function calls is reserved: an argument never shadows it.

A variable named `_may_reuse` used to become the PyTorch function's parameter, and the guard
call `_may_reuse(...)` then called the tensor ('Tensor' object is not callable). The names are
read off the helper sources and import lines themselves, so a helper added later is covered.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

from engine import derive
from engine.export import TARGETS, forms, kernels, labels, load, reuse, size_plan
from engine.export.emitter import CHECK_SHAPES, RESERVED
from engine.functions import REGISTRY


def _module_names() -> set[str]:
    sources = [CHECK_SHAPES, reuse.REUSE_HELPER, size_plan.SIZE_ARG]
    sources += [*labels.CHECK_LABELS.values(), *forms.HELPERS.values()]
    sources += [*kernels.HELPERS.values()]
    sources += [h for t in TARGETS.values() for h in t.helpers]
    names = {
        node.name
        for src in sources
        for node in ast.parse(src).body
        if isinstance(node, ast.FunctionDef)
    }
    imports = [reuse.REUSE_IMPORT, forms.NP, forms.JNP, forms.TORCH, forms.MATH, forms.JAX]
    imports += [forms.ERF_NP, forms.ERF_JAX]
    for line in imports:
        for node in ast.parse(line).body:
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
    return names


def test_every_helper_and_import_name_is_reserved():
    assert _module_names() - RESERVED == set()


# (names of the formula language's functions, such as erf, are refused as variables anyway)
@pytest.mark.parametrize("name", sorted(_module_names() - set(REGISTRY)))
@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_a_variable_may_be_named_like_a_helper(name, target):
    program = derive(
        f"sum(O * softmax({name} * {name}))",
        [name],
        {name: "real[n, k]", "O": "real[n, k]"},
        verify=False,  # the values are compared with NumPy below
    )
    fn = load(program, target)
    rng = np.random.default_rng(0)
    x, o = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    value, grads = fn(x, o)
    s = x * x
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    want = 2 * x * p * (o - np.sum(p * o, axis=-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(grads[name]), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(value), float(np.sum(o * p)), rtol=1e-12)
