"""The README's worked example (a fused attention backward in a torch.nn.Module) runs as printed.

The code block is read from README.md itself, so the README cannot drift from what works: it
must derive and verify the program, train, and print the loss its comment states; the same
module with plain torch.autograd attention must train to the same loss.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"A worked example, a\s+fused\s+attention\s+backward")


def _example() -> str:
    text = README.read_text()
    found = MARKER.search(text)
    assert found is not None, "the README's worked example is missing"
    block = re.search(r"```python\n(.*?)```", text[found.end() :], re.S)
    assert block is not None
    return block.group(1)


def test_readme_attention_example_trains_as_printed():
    code = _example()
    assert 'as_="autograd-function"' in code and "torch.nn.Module" in code
    stated = re.search(r'print\(f"\{loss.item\(\):\.4f\}"\)\s*#\s*([0-9.]+)', code)
    assert stated is not None, "the example's print line states no loss"
    namespace: dict = {"__name__": "readme_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)  # the README's own code, unchanged
    printed = float(out.getvalue().strip().splitlines()[-1])
    assert abs(printed - float(stated.group(1))) <= 5e-4, (printed, stated.group(1))
    fused_loss = namespace["loss"].item()

    # The same module and loop with torch's own attention: autograd gives the same training.
    def plain(Q, K, V):
        return torch.softmax(Q @ K.T / math.sqrt(Q.shape[1]), dim=-1) @ V

    namespace["attention"] = plain  # Head.forward reads the module-level name
    torch.manual_seed(0)
    head = namespace["Head"](16, 8)
    x, target = torch.randn(10, 16), torch.randn(10, 8)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = torch.mean((head(x) - target) ** 2)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first  # it trains
    assert math.isclose(loss.item(), fused_loss, rel_tol=1e-4, abs_tol=1e-6)
