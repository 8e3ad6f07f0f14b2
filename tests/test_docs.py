"""Every python example in docs/ runs as written (in a fresh process, from a scratch folder)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples():
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            if "not run here" not in code.splitlines()[0]:
                yield pytest.param(code, id=f"{page.stem}-{i}")


@pytest.mark.parametrize("code", list(examples()))
def test_doc_example_runs(code, tmp_path):
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def test_docs_have_examples():
    assert len(list(examples())) >= 2
