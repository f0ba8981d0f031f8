"""The exported names are exactly the documented ones, and each resolves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import bedrock_gateway

DOC = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()


def test_exports_match_the_docs() -> None:
    documented = set()
    for cell in re.findall(r"^\| ([^|]+) \|", DOC, re.M):
        documented |= set(re.findall(r"`(\w+)`", cell))
    assert documented == set(bedrock_gateway.__all__)
    for name in bedrock_gateway.__all__:
        assert getattr(bedrock_gateway, name) is not None


def test_import_is_light() -> None:
    code = "import sys, bedrock_gateway; print(any(m.startswith(('botocore', 'pydantic')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
