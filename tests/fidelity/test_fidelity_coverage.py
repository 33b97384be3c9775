"""Every built-in method is on the fidelity page, each named test exists in
``tests/fidelity``, and a method without one is listed as unchecked."""

import re
from pathlib import Path

from dalib.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guides" / "fidelity.md"


def _rows() -> dict[str, str]:
    """{method: its 'checked by' cell} from the page's tables."""
    rows = {}
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            rows[name] = cells[2]
    return rows


def test_every_builtin_method_has_a_formula_test_or_is_listed_unchecked():
    rows = _rows()
    tests = {m for f in Path(__file__).parent.glob("test_fidelity_*.py")
             for m in re.findall(r"^def (test_\w+)", f.read_text(), re.M)}
    builtin = [n for n, e in REGISTRY.items() if e.origin is None]
    for name in builtin:
        key = "avalanche:*" if name.startswith("avalanche:") else name
        assert key in rows, f"{name} is not on {PAGE.name}"
        named = re.findall(r"`(test_\w+)`", rows[key])
        assert named or rows[key].startswith("unchecked"), name
        assert set(named) <= tests, (name, set(named) - tests)
