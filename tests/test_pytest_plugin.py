"""The pytest plugin: claims files run as tests, one item per claim, counterexample reports."""

from __future__ import annotations

import importlib.metadata
import textwrap

import pytest

pytest_plugins = ["pytester"]

CLAIMS = """
[vars]
z = "real[n]"
y = "simplex[n]"

[defs]
p = "softmax(z)"

[[claim]]
name = "softmax-sums-to-one"
equation = "sum(p) == 1"

[[claim]]
name = "ce-gradient"
equation = "grad(cross_entropy(p, y), z) == p - y"

[[claim]]
name = "ce-gradient-wrong-sign"
equation = "grad(cross_entropy(p, y), z) == y - p"

[[claim]]
name = "documented-wrong"
equation = "grad(cross_entropy(p, y), z) == y - p"
expect = "fail"
"""


@pytest.fixture
def claims_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", claims_ce=CLAIMS)
    return pytester


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def test_plugin_is_registered_by_entry_point():
    points = importlib.metadata.entry_points(group="pytest11")
    assert any(p.name == "llm_math" and p.value == "engine.pytest_plugin" for p in points)


def test_one_item_per_claim(claims_dir: pytest.Pytester):
    result = claims_dir.runpytest("--collect-only", "-q")
    lines = [line for line in result.outlines if "::" in line]
    assert lines == [
        "claims_ce.toml::softmax-sums-to-one",
        "claims_ce.toml::ce-gradient",
        "claims_ce.toml::ce-gradient-wrong-sign",
        "claims_ce.toml::documented-wrong",
    ]


def test_failing_claim_reports_the_counterexample(claims_dir: pytest.Pytester):
    result = claims_dir.runpytest("-q")
    assert _outcomes(result) == {"passed": 3, "failed": 1}
    text = result.stdout.str()
    assert "FAIL ce-gradient-wrong-sign" in text
    assert "check at" in text and "differs" in text  # the counterexample's point and entry
    assert "z = " in text  # the inputs of the counterexample
    assert "Traceback" not in text and "engine/" not in text  # no Python traceback noise


def test_k_selects_claims_by_name(claims_dir: pytest.Pytester):
    result = claims_dir.runpytest("-q", "-k", "sums or documented")
    assert _outcomes(result) == {"passed": 2, "deselected": 2}


def test_expect_fail_claim_that_passes_is_reported(pytester: pytest.Pytester):
    pytester.makefile(
        ".claims.toml",
        wrong_mark=textwrap.dedent(
            """
            [vars]
            x = "real[n]"
            [[claim]]
            name = "actually-true"
            equation = "sum(x) == sum(x)"
            expect = "fail"
            """
        ),
    )
    result = pytester.runpytest("-q")
    assert _outcomes(result) == {"failed": 1}
    assert 'marked expect = "fail" but the verifier passed it' in result.stdout.str()


def test_error_claim_fails_with_one_line(pytester: pytest.Pytester):
    pytester.makefile(
        ".toml",
        claims_err='[vars]\nx = "real[n]"\n[[claim]]\nname = "bad"\nequation = "foo(x) == x"\n',
    )
    result = pytester.runpytest("-q")
    assert _outcomes(result) == {"failed": 1}
    assert "ERROR bad: unknown function 'foo'" in result.stdout.str()


def test_malformed_file_is_a_collection_error_in_one_line(pytester: pytest.Pytester):
    pytester.makefile(".toml", claims_broken="[vars\n")
    result = pytester.runpytest("-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    text = result.stdout.str()
    assert "not valid TOML" in text and "Traceback" not in text


def test_other_toml_files_are_not_collected(pytester: pytest.Pytester):
    pytester.makefile(".toml", settings=CLAIMS)
    result = pytester.runpytest("-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_patterns_are_configurable(pytester: pytest.Pytester):
    pytester.makefile(".toml", formulas=CLAIMS)
    pytester.makeini("[pytest]\nllm_math_claims = formulas.toml\n")
    result = pytester.runpytest("-q", "-k", "not wrong-sign")
    assert _outcomes(result) == {"passed": 3, "deselected": 1}


def test_plugin_can_be_disabled(claims_dir: pytest.Pytester):
    result = claims_dir.runpytest("-q", "-p", "no:llm_math")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_seed_option_reaches_the_verifier(claims_dir: pytest.Pytester):
    result = claims_dir.runpytest("-q", "--llm-math-seed", "7", "-k", "wrong-sign")
    assert _outcomes(result) == {"failed": 1, "deselected": 3}
    bad = claims_dir.runpytest("-q", "--llm-math-seed", "x")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_runs_under_xdist(claims_dir: pytest.Pytester):
    result = claims_dir.runpytest_subprocess("-q", "-n", "2", "-p", "xdist")
    assert _outcomes(result) == {"passed": 3, "failed": 1}
    assert "FAIL ce-gradient-wrong-sign" in result.stdout.str()
