"""Exported functions refuse integer labels outside 0..V-1 (issue 9): all targets and wrappers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.api import derive
from engine.export import load, to_module

CE = "-mean(take_along_axis(log_softmax(Z), y))"
CE_VARS = {"Z": "real[B, V]", "y": "index[B, V]"}
ONE_HOT = "sum(x * max(one_hot(y), axis=-1))"
ONE_HOT_VARS = {"x": "real[B]", "y": "index[B, V]"}


@pytest.fixture(scope="module")
def ce_program():
    return derive(CE, ["Z"], CE_VARS, verify=False)


@pytest.fixture(scope="module")
def one_hot_program():
    return derive(ONE_HOT, ["x"], ONE_HOT_VARS, verify=False)


BAD = [(4, "label 4, outside 0..3"), (-1, "label -1, outside 0..3")]


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("bad,message", BAD)
def test_take_along_axis_export_refuses_labels_out_of_range(ce_program, target, bad, message):
    fn = load(ce_program, target)
    Z = np.random.default_rng(0).standard_normal((3, 4))
    value, _ = fn(Z, np.array([0, 3, 1]))
    assert np.isfinite(float(value))
    with pytest.raises(ValueError, match=f"argument y has the {message}"):
        fn(Z, np.array([0, bad, 1]))


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("bad,message", BAD)
def test_one_hot_export_with_keyword_bound_refuses_labels(one_hot_program, target, bad, message):
    fn = load(one_hot_program, target)
    x = np.array([0.5, -1.0, 2.0])
    value, _ = fn(x, np.array([0, 3, 1]), V=4)
    assert float(value) == pytest.approx(x.sum())
    with pytest.raises(ValueError, match=f"argument y has the {message}"):
        fn(x, np.array([bad, 0, 1]), V=4)


@pytest.mark.parametrize("kind", ["autograd-function", "custom-vjp"])
@pytest.mark.parametrize("bad,message", BAD)
def test_wrappers_refuse_labels_out_of_range(ce_program, kind, bad, message):
    target = "torch" if kind == "autograd-function" else "jax"
    fn = load(ce_program, target, as_=kind)
    Z = np.random.default_rng(1).standard_normal((3, 4))
    fn(Z, np.array([0, 3, 1]))
    with pytest.raises(ValueError, match=f"argument y has the {message}"):
        fn(Z, np.array([0, 1, bad]))


def test_jax_module_says_what_happens_under_jit(ce_program):
    import jax

    src = to_module(ce_program, "jax")
    assert "under jax.jit" in src and "not checked" in src
    fn = load(ce_program, "jax")
    Z = np.zeros((3, 4))
    value, _ = jax.jit(fn)(Z, np.array([0, 3, 1]))  # traced labels: no check, no error
    assert np.isfinite(float(value))
