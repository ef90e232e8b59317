"""The README's library example runs as written (in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_library_example_runs(tmp_path, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert 'Path("/tmp/example")' in code
    code = code.replace('Path("/tmp/example")', f"Path({str(tmp_path / 'example')!r})")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.split()
    assert out[0].startswith("xprv") and out[1].startswith("xpub") and out[2] == "True"


def test_quick_start_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install '.[test]' && pytest" in text
    assert "python -m coverage run -m pytest && python .ci/raise_coverage.py" in text
    assert "python -m coverage run -m pytest\npython .ci/raise_coverage.py" in ci
    assert "pip install . && posctl demo" in text
    assert "pip install --quiet '.[test]'" in ci and "python -m coverage run -m pytest" in ci
