import numpy as np
import pytest

from scenarios.domain import from_arrays, load_npz
from scenarios.errors import InputError


def _save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_npz_roundtrip_scales_uint8(tmp_path):
    x = np.full((4, 5, 5), 255, dtype=np.uint8)
    d = load_npz(_save(tmp_path, x=x, y=np.array([0, 1, 2, 1])))
    assert d.x.shape == (4, 1, 5, 5) and float(d.x.max()) == 1.0
    assert d.num_classes == 3 and d.input_shape == (1, 5, 5)


@pytest.mark.parametrize("arrays, field, expected", [
    ({"y": np.zeros(3, int)}, "x", "array named x"),
    ({"x": np.zeros((3, 4))}, "y", "array named y"),
    ({"x": np.zeros((3, 4)), "y": np.zeros(2, int)}, "y", "length 3"),
    ({"x": np.array([[0.0, np.nan], [1, 1]]), "y": np.zeros(2, int)}, "x", "finite"),
    ({"x": np.array([[0.0, np.inf], [1, 1]]), "y": np.zeros(2, int)}, "x", "finite"),
    ({"x": np.zeros((2, 4)), "y": np.array([0, -1])}, "y", ">= 0"),
    ({"x": np.zeros((2, 4)), "y": np.array(["a", "b"])}, "y", "integers"),
    ({"x": np.zeros((0, 4)), "y": np.zeros(0, int)}, "x", "at least one sample"),
    ({"x": np.zeros((2, 4)), "y": np.zeros(2, int), "task": np.zeros(3, int)}, "task", "length 2"),
    ({"x": np.zeros((2, 4)), "y": np.zeros(2, int), "extra": np.zeros(2)}, "extra", "only x, y"),
])
def test_npz_errors_name_file_field_expectation(tmp_path, arrays, field, expected):
    path = _save(tmp_path, **arrays)
    with pytest.raises(InputError) as err:
        load_npz(path)
    msg = str(err.value)
    assert str(path) in msg and f"{field}:" in msg and expected in msg
    assert "\n" not in msg


def test_labels_beyond_declared_classes(tmp_path):
    path = _save(tmp_path, x=np.zeros((2, 3)), y=np.array([0, 5]), classes=np.array(["a", "b"]))
    with pytest.raises(InputError, match=r"y: has label 5 \(expected labels in \[0, 2\)\)"):
        load_npz(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_npz(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("x,y\n0.5,1\n")  # a CSV given as .npz
    with pytest.raises(InputError, match="is not an .npz archive"):
        load_npz(bad)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match="cannot be read"):
        load_npz(broken)


def test_from_arrays_keeps_floats_and_subset_follows_fields():
    d = from_arrays(np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1, 0, 1, 2, 2]),
                    task=np.array([0, 0, 1, 1, 2, 2]))
    assert float(d.x.max()) == 11.0
    s = d.subset(np.array([1, 4]))
    assert s.y.tolist() == [1, 2] and s.task.tolist() == [0, 2] and s.x[1, 0] == 8.0
