"""The README's Python example runs as printed, and its links point at files that exist."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_python_blocks_run_as_printed(tmp_path):
    """The example (training DANN and replay) and the plugin file (registering a term)."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    outputs = []
    for i, code in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert len(blocks) == 2 and outputs[0].startswith("target ")


def test_every_relative_link_exists():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
