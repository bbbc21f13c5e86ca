"""Sizes under a relation print as its name, and every printed program parses back to itself.

A derived program whose reduction counts a relation's size (`mean` over d, where d = h * dh)
printed `/ dh*h`, which reads as `(... / dh) * h`: a wrong formula on screen from a right tree.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.api import derive
from engine.backends import numpy_backend
from engine.parser import build_environment, parse_formula
from engine.printing.text import to_text

REL = {"d": "h * dh"}
CASES = [
    # (loss, wrt, vars): each uses d = h * dh in a count, a shape or a slice
    ("sum(g * mean(X, axis=-1))", ["X"], {"X": "real[n, d]", "g": "real[n]"}),
    ("sum(G * reshape(X, (n, h, dh)))", ["X"], {"X": "real[n, d]", "G": "real[n, h, dh]"}),
    ("sum(var(X, axis=-1))", ["X"], {"X": "real[n, d]"}),
    (
        "sum(G * reshape(X @ W, (n, h, dh)))",
        ["W"],
        {"X": "real[n, d]", "W": "real[d, d]", "G": "real[n, h, dh]"},
    ),
    ("sum(mean(X, axis=(0, 1)) * g)", ["X"], {"X": "real[n, d, m]", "g": "real[m]"}),
]


@pytest.mark.parametrize("loss, wrt, vars_", CASES)
def test_a_relation_size_prints_as_its_name_and_reparses(loss, wrt, vars_):
    program = derive(loss, wrt, vars_, sizes=REL)  # verified
    assert program.verified
    text = program.to_text()
    assert "dh*h" not in text and "h*dh" not in text and "dh * h" not in text, text
    assert "d_{h} \\, h" not in program.to_latex()
    env = build_environment(vars_, {}, REL)
    rng = np.random.default_rng(0)
    sizes = {"n": 3, "h": 2, "dh": 3, "d": 6, "m": 4}
    values = {
        k: rng.standard_normal(
            tuple(int(d.subs({s: sizes[str(s)] for s in d.free_symbols})) for d in v.shape)
        )
        for k, v in env.vars.items()
    }
    for w, g in program.gradients:
        line = dict(line.split(" = ", 1) for line in text.splitlines())[program.gradient_name(w)]
        again = parse_formula(line, env)
        np.testing.assert_allclose(
            numpy_backend.evaluate(again, values, sizes),
            numpy_backend.evaluate(g, values, sizes),
            rtol=1e-12,
            atol=1e-12,
        )


def test_a_product_of_sizes_outside_a_program_prints_in_parentheses():
    program = derive(
        "sum(g * mean(X, axis=-1))",
        ["X"],
        {"X": "real[n, d]", "g": "real[n]"},
        sizes=REL,
        verify=False,
    )
    bare = to_text(dict(program.gradients)["X"])  # no relation names in scope
    assert bare.endswith("/ (dh * h)"), bare
    assert program.to_text() == "dX = outer(g, ones(d)) / d"
