"""The field's data formats as domains: image folders (``root/class/image`` and the
multi-domain ``root/domain/class/image``), image lists (``path label`` lines, as TLlib ships
them) and tables (CSV, Parquet).

Images are decoded once, in parallel processes with a progress bar, converted to 1 or 3
channels, resized, and cached on disk as one uint8 array (``$DALIB_CACHE``, default
``~/.cache/dalib/images``) keyed by the file list, sizes and modification times and the
decoding options: a second load memory-maps the cache. A file that cannot be decoded is named
in the error.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from scenarios import checks
from scenarios.domain import MAX_CLASSES, Domain, from_arrays
from scenarios.errors import InputError
from scenarios.pixels import ImageFiles, Pixels
from scenarios.text import check_text_spec, load_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm"}
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
FORMAT_KEYS = {  # each format's keys in a data table (besides shifts)
    "folder": {"folder", "domain", "size", "channels", "read"},
    "list": {"list", "root", "size", "channels", "read"},
    "table": {"table", "label", "features", "domain_column", "domain"},
    "text": {"text", "label", "column", "vocab", "length", "domain_column", "domain"},
}
FORMAT_HELP = {
    "folder": "images in root/class/image, or root/domain/class/image with domain = NAME; "
              "read = 'files' decodes each batch from the files (nothing cached)",
    "list": "an image list, one 'relative/path label' per line (paths relative to root)",
    "table": "a CSV, TSV or Parquet table; label = COLUMN, features = [COLUMNS], "
             "domain_column = COLUMN (several domains; domain = VALUE picks one)",
    "text": "a CSV, TSV or Parquet table with a text column: label = COLUMN, column = COLUMN "
            "(its text as hashed word ids), vocab = 32768, length = 64; domain_column as for "
            "tables",
}
CACHE_VERSION = 1
MAX_PIXELS = 89_478_485  # Pillow's own bound (1/4 GiB of RGBA): larger files are refused
PARALLEL_FROM = 512  # images; fewer are decoded in this process
READS = ("cache", "files")  # decode once into the cache, or each batch from the files


def cache_dir() -> Path:
    if os.environ.get("DALIB_CACHE"):
        return Path(os.environ["DALIB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dalib" / "images"


def check_spec(spec: dict, kind: str) -> None:
    """Types and ranges of a format's keys (at suite load, before anything runs)."""
    checks.string(spec[kind], kind)
    if "domain" in spec:
        checks.string(spec["domain"], "domain")
    if "root" in spec:
        checks.string(spec["root"], "root")
    if "size" in spec:
        _size(spec["size"])
    if "read" in spec:
        checks.string(spec["read"], "read", READS)
        if spec["read"] == "files" and "size" not in spec:
            raise InputError("read", "is 'files' without size", expected="size = N or "
                             "[height, width]: images read batch by batch share one size")
    if "channels" in spec and spec["channels"] not in (1, 3) or \
            isinstance(spec.get("channels"), bool):
        raise InputError("channels", f"is {spec['channels']!r}", expected="1 or 3")
    if "label" in spec:
        checks.string(spec["label"], "label")
    if "domain_column" in spec:
        checks.string(spec["domain_column"], "domain_column")
    elif "domain" in spec and kind in ("table", "text"):
        raise InputError("domain", "is set without domain_column",
                         expected="domain_column = COLUMN naming the column that holds it")
    if "features" in spec:
        f = spec["features"]
        if not isinstance(f, list) or not f or not all(isinstance(c, str) for c in f):
            raise InputError("features", f"is {f!r}", expected="a list of column names")
    if kind == "text":
        check_text_spec(spec)


def _size(value) -> tuple[int, int]:
    if isinstance(value, list):
        h, w = checks.number_list(value, "size", low=1, high=4096, integer=True, min_length=2,
                                  max_length=2)
        return h, w
    v = checks.integer(value, "size", 1, 4096, "an integer in [1, 4096] or [height, width]")
    return v, v


def resolve_path(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return base_dir / p if base_dir is not None and not p.is_absolute() else p


# ---- decoding and the cache

def _decode(path: str, size: tuple[int, int] | None, channels: int) -> np.ndarray | str:
    """One image as H x W x C uint8, or the reason it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns of large images: refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if img.width * img.height > MAX_PIXELS:
                return (f"{img.width} x {img.height} pixels, more than the {MAX_PIXELS:,} an "
                        "image may have (a decompression bomb, or a scan to shrink first)")
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return arr[..., None] if arr.ndim == 2 else arr


def _decode_chunk(args) -> list[np.ndarray | str]:
    paths, size, channels = args
    return [_decode(p, size, channels) for p in paths]


def cache_key(paths: list[Path], size: tuple[int, int] | None, channels: int) -> str:
    """Identifies a decoded array: every file's path, size and modification time, and the
    decoding options."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, size, channels]).encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def decode_images(paths: list[Path], size: tuple[int, int] | None, channels: int,
                  where: str) -> np.ndarray:
    """N x H x W x C uint8 images, from the cache when the files did not change (memory
    mapped), else decoded (in parallel processes from ``PARALLEL_FROM`` images on) and
    cached. Without ``size`` every image must have the first one's size."""
    try:
        key = cache_key(paths, size, channels)
    except OSError as exc:
        raise InputError("images", f"cannot read {exc.filename}", expected="readable files",
                         source=where) from None
    cached = cache_dir() / f"{key}.npy"
    if cached.is_file():
        try:
            return np.load(cached, mmap_mode="r")
        except (OSError, ValueError):
            cached.unlink(missing_ok=True)  # a damaged cache file is decoded again
    arrays = _decode_all([str(p) for p in paths], size, channels)
    for p, a in zip(paths, arrays, strict=True):
        if isinstance(a, str):
            raise InputError("images", f"{str(p)!r} cannot be decoded ({a})",
                             expected="image files (PNG, JPEG, ...)", source=where)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        odd = next(p for p, a in zip(paths, arrays, strict=True) if a.shape != first)
        raise InputError("size", f"is not set and images differ in size ({str(paths[0])!r} is "
                         f"{first[1]} x {first[0]}, {str(odd)!r} is not)",
                         expected="size = N or [height, width] in the data table",
                         source=where)
    x = np.stack(arrays)
    _save(cached, x)
    return x


def _decode_all(paths: list[str], size, channels) -> list[np.ndarray | str]:
    from tqdm.auto import tqdm

    quiet = not sys.stderr.isatty() or bool(os.environ.get("DALIB_NO_PROGRESS"))
    workers = min(os.cpu_count() or 1, 8)
    if len(paths) < PARALLEL_FROM or workers < 2:
        return [_decode(p, size, channels) for p in tqdm(paths, desc="decoding images",
                                                         disable=quiet, leave=False)]
    chunk = max(64, len(paths) // (4 * workers))
    jobs = [(paths[i:i + chunk], size, channels) for i in range(0, len(paths), chunk)]
    out: list[np.ndarray | str] = []
    # fork: the workers need only PIL and NumPy, and start at once
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool, \
            tqdm(total=len(paths), desc="decoding images", disable=quiet, leave=False) as bar:
        for part in pool.map(_decode_chunk, jobs):
            out += part
            bar.update(len(part))
    return out


def _save(path: Path, x: np.ndarray) -> None:
    """Write the cache atomically; a cache that cannot be written is skipped (the next load
    decodes again)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with open(tmp, "wb") as fh:
            np.save(fh, x)
        os.replace(tmp, path)
    except OSError:
        Path(path.with_name(f".tmp-{os.getpid()}-{path.name}")).unlink(missing_ok=True)


def _images_domain(paths: list[Path], labels: list[int], classes: tuple[str, ...],
                   spec: dict, where: str, name: str) -> Domain:
    size = _size(spec["size"]) if "size" in spec else None
    channels = spec["channels"] if "channels" in spec else 1 if _grey(paths) else 3
    return images_domain(paths, labels, classes, size, channels, spec.get("read", "cache"),
                         where, name)


def images_domain(paths: list[Path], labels, classes, size: tuple[int, int] | None,
                  channels: int, read: str, where: str, name: str) -> Domain:
    """A domain of image files: decoded once into the cache (``read = "cache"``), or read
    from the files batch by batch (``"files"``: :class:`~scenarios.pixels.ImageFiles`,
    nothing kept; the same pixels)."""
    if read == "files":
        files = ImageFiles(paths, size, channels, where)
        shell = from_arrays(np.zeros((len(paths), 1, 1, 1), np.uint8), np.asarray(labels),
                            name=name, classes=classes, source=where, layout="NHWC", lazy=True)
        return shell.with_(x=Pixels(files))
    x = decode_images(paths, size, channels, where)
    return from_arrays(x, np.asarray(labels), name=name, classes=classes, source=where,
                       layout="NHWC", lazy=True)


def _grey(paths: list[Path]) -> bool:
    """Whether the first image is single-channel (the default ``channels``)."""
    from PIL import Image

    try:
        with Image.open(paths[0]) as img:
            return img.mode in ("1", "L", "I", "I;16", "F", "LA")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False  # decode_images names the file


# ---- the formats

def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                  and p.is_file())


def load_folder(spec: dict, base_dir: Path | None) -> Domain:
    """``{ folder = ROOT }``: torchvision's ImageFolder layout, ``ROOT/class/image`` (class
    names from the folders, sorted: the same mapping for every folder with the same
    classes); with ``domain = NAME``, ``ROOT/NAME/class/image`` (DomainBed, Office-31,
    Office-Home, PACS, DomainNet)."""
    root = resolve_path(spec["folder"], base_dir)
    where = str(root)
    if not root.is_dir():
        raise InputError("folder", f"{where!r} is not a folder", expected="a folder of class "
                         "folders (root/class/image)")
    if "domain" in spec:
        domains = sorted(p.name for p in root.iterdir() if p.is_dir())
        if spec["domain"] not in domains:
            raise InputError("domain", f"is {spec['domain']!r}, not a folder of {where!r}",
                             expected=f"one of {', '.join(domains) or 'none'}")
        root = root / spec["domain"]
        where = str(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise InputError("folder", f"{where!r} holds no class folders",
                         expected="root/class/image (or domain = NAME for root/domain/class/"
                         "image)")
    paths, labels = [], []
    for c, d in enumerate(class_dirs):
        images = _images_in(d)
        if not images:
            raise InputError("folder", f"class folder {d.name!r} of {where!r} holds no images",
                             expected=f"image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += images
        labels += [c] * len(images)
    name = f"{Path(spec['folder']).name}/{spec['domain']}" if "domain" in spec else root.name
    return _images_domain(paths, labels, tuple(d.name for d in class_dirs), spec, where, name)


def load_list(spec: dict, base_dir: Path | None) -> Domain:
    """``{ list = FILE, root = FOLDER }``: one ``relative/path label`` per line (TLlib's image
    lists); paths are relative to ``root`` (default: the list's folder), labels integers."""
    path = resolve_path(spec["list"], base_dir)
    where = str(path)
    if not path.is_file():
        raise InputError("list", f"file {where!r} does not exist", expected="an image list "
                         "(one 'path label' per line)")
    root = resolve_path(spec["root"], base_dir) if "root" in spec else path.parent
    paths, labels = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("list", f"cannot be read ({exc})", expected="a UTF-8 text file",
                         source=where) from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or \
                not 0 <= int(parts[1]) < MAX_CLASSES:
            raise InputError(f"line {i}", f"is {line[:200]!r}", expected="'relative/path label' "
                             f"with an integer label in 0..{MAX_CLASSES - 1}", source=where)
        image = root / parts[0]
        if not image.is_file():
            raise InputError(f"line {i}", f"names {str(image)!r}, which does not exist",
                             expected=f"paths relative to root ({str(root)!r})", source=where)
        paths.append(image)
        labels.append(int(parts[1]))
    if not paths:
        raise InputError("list", "names no images", expected="one 'path label' per line",
                         source=where)
    classes = tuple(str(c) for c in range(max(labels) + 1))
    return _images_domain(paths, labels, classes, spec, where, path.stem)


def read_table(spec: dict, base_dir: Path | None):
    """The pandas frame of a ``table`` data table's file."""
    import pandas as pd

    path = resolve_path(spec["table"], base_dir)
    where = str(path)
    if not path.is_file():
        raise InputError("table", f"file {where!r} does not exist", expected="a CSV or Parquet "
                         "file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError("table", f"has suffix {suffix!r}",
                         expected=f"one of {', '.join(TABLE_SUFFIXES)}", source=where)
    try:
        if TABLE_SUFFIXES[suffix] is None:
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=TABLE_SUFFIXES[suffix])
    except ImportError:
        raise InputError("table", "is Parquet but pyarrow is not installed",
                         expected="pip install pyarrow, or a CSV file", source=where) from None
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError) as exc:
        raise InputError("table", f"cannot be read ({str(exc).splitlines()[0]})",
                         expected="a CSV or Parquet table", source=where) from None


def table_domains(spec: dict, base_dir: Path | None) -> list[str]:
    """The values of a table's ``domain_column`` (as text, sorted)."""
    column, frame = spec["domain_column"], read_table(spec, base_dir)
    if column not in frame:
        raise InputError("domain_column", f"is {column!r}, not a column",
                         expected=f"one of {', '.join(map(str, frame.columns[:20]))}",
                         source=str(resolve_path(spec["table"], base_dir)))
    return sorted(frame[column].astype(str).unique())


def table_frame(spec: dict, base_dir: Path | None, kind: str):
    """A ``table`` or ``text`` data table's file read, its ``label`` and ``domain_column``
    checked: ``(frame, where, first CSV data line or None)``."""
    path = resolve_path(spec[kind], base_dir)
    where = str(path)
    frame = read_table({**spec, "table": spec[kind]}, base_dir)
    column = spec.get("domain_column")
    if column is not None and column not in frame:
        raise InputError("domain_column", f"is {column!r}, not a column",
                         expected=f"one of {', '.join(map(str, frame.columns[:20]))}",
                         source=where)
    label = spec.get("label")
    if label is None or label not in frame:
        raise InputError("label", f"is {label!r}" + ("" if label is None else ", not a column"),
                         expected=f"label = one of {', '.join(map(str, frame.columns[:20]))}",
                         source=where)
    return frame, where, 2 if TABLE_SUFFIXES[path.suffix.lower()] else None


def table_labels(frame, spec: dict, where: str, kind: str
                 ) -> tuple[np.ndarray, list[str] | None, np.ndarray, str]:
    """The label column's codes and class names (text labels: sorted names over the whole
    file; integer labels as they are, names None), the rows to keep (``domain = VALUE`` of
    the ``domain_column``; all rows without) and the domain's name."""
    import pandas as pd

    label, column = spec["label"], spec.get("domain_column")
    y = frame[label]
    if pd.api.types.is_integer_dtype(y) and (y >= 0).all():
        codes, classes = y.to_numpy(), None
    else:
        names = sorted(y.astype(str).unique())
        codes = y.astype(str).map({n: i for i, n in enumerate(names)}).to_numpy()
        classes = names
    keep, name = np.ones(len(frame), dtype=bool), resolve_path(spec[kind], None).stem
    if column is not None and "domain" in spec:
        values = frame[column].astype(str)
        keep = (values == str(spec["domain"])).to_numpy()
        if not keep.any():
            raise InputError("domain", f"is {spec['domain']!r}, not a value of column "
                             f"{column!r}", expected=f"one of {', '.join(sorted(values.unique()))}",
                             source=where)
        name = f"{name}/{spec['domain']}"
        classes = classes or [str(c) for c in range(int(y.max()) + 1)]
    return codes, classes, keep, name


def missing_values(frame, columns: list, where: str, line: int | None) -> None:
    """An input error naming the first missing cell of ``columns``, if any."""
    for col in columns:
        missing = frame[col].isna().to_numpy()
        if missing.any():
            raise InputError(f"column {col}", f"has {int(missing.sum())} missing values (first "
                             f"in {_row(int(np.flatnonzero(missing)[0]), line)})",
                             expected="no missing values (impute or drop them first)",
                             source=where)


def load_table(spec: dict, base_dir: Path | None) -> Domain:
    """``{ table = FILE, label = COLUMN, features = [...] }``: a CSV (``.csv``, ``.tsv``) or
    Parquet file; features are the listed columns, by default every numeric column but the
    label (and the ``domain_column``). Text labels become classes (sorted names over the
    whole file, so its domains share them), integer labels are used as they are. With
    ``domain_column`` the file holds several domains; ``domain = VALUE`` keeps one's rows."""
    import pandas as pd

    frame, where, line = table_frame(spec, base_dir, "table")
    label, column = spec["label"], spec.get("domain_column")
    features = spec.get("features") or [c for c in frame.columns if c not in (label, column)
                                        and _numeric_column(frame[c], c, where, line)]
    if not features:
        raise InputError("features", "none: no numeric column besides the label",
                         expected="numeric feature columns", source=where)
    for col in features:
        if col not in frame:
            raise InputError("features", f"names {col!r}, not a column",
                             expected=f"columns of {where!r}", source=where)
        if not _numeric_column(frame[col], col, where, line):
            raise InputError(f"column {col}", f"is not numeric (e.g. {frame[col].iloc[0]!r})",
                             expected="numeric feature columns (encode categories first, or "
                             "leave the column out of features)", source=where)
    missing_values(frame, [*features, label], where, line)
    codes, classes, keep, name = table_labels(frame, spec, where, "table")
    x = frame[features].apply(pd.to_numeric).to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        r, c = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise InputError(f"column {features[c]}", f"is {x[r, c]} in {_row(r, line)}",
                         expected="finite numbers", source=where)
    if np.abs(x).max(initial=0) > np.finfo(np.float32).max:
        r, c = (int(i) for i in np.argwhere(np.abs(x) > np.finfo(np.float32).max)[0])
        raise InputError(f"column {features[c]}", f"is {x[r, c]:g} in {_row(r, line)}, beyond "
                         "float32", expected="values within +-3.4e38 (rescale the column)",
                         source=where)
    domain = from_arrays(x[keep].astype(np.float32), codes[keep], name=name, classes=classes,
                         source=where)
    return domain.with_(meta={**domain.meta, "columns": tuple(map(str, features)),
                              "file": where})


def _row(index: int, line: int | None) -> str:
    """A table's data row (from 1), with its line in a CSV file."""
    return f"data row {index + 1}" + (f" (line {index + line})" if line else "")


def _numeric_column(column, name: str, where: str, line: int | None) -> bool:
    """Whether a table column holds numbers (booleans are not features). A column of numbers
    with some cells that are not is an input error naming the first such cell; a column of
    text is not numeric."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = pd.to_numeric(column, errors="coerce")
    bad = (values.isna() & column.notna()).to_numpy()
    if bad.all() or not bad.any():
        return not bad.any()
    first = int(np.flatnonzero(bad)[0])
    raise InputError(f"column {name}", f"is {column.iloc[first]!r} in {_row(first, line)}, "
                     "not a number", expected="numbers in every cell of a feature column (or "
                     "leave the column out of features)", source=where)


def align_columns(reference, other, role: str):
    """``other``'s feature columns in ``reference``'s order, matched by name: tables of
    several domains may list their columns in any order. A differing set of columns is an
    input error naming the missing and extra ones. Domains not read from tables pass."""
    ref, own = reference.meta.get("columns"), other.meta.get("columns")
    if ref is None or own is None or ref == own:
        return other
    missing, extra = [c for c in ref if c not in own], [c for c in own if c not in ref]
    if missing or extra:
        parts = ([f"lacks {', '.join(map(repr, missing))}"] if missing else []) + \
            ([f"has {', '.join(map(repr, extra))} in addition"] if extra else [])
        raise InputError(role, f"table {other.meta['file']!r} has other feature columns than "
                         f"{reference.meta['file']!r}: it {' and '.join(parts)}",
                         expected="the same feature columns (by name, in any order), or "
                         "features = [...] naming the shared ones")
    order = [own.index(c) for c in ref]
    return other.with_(x=other.x[:, order], meta={**other.meta, "columns": ref})


LOADERS = {"folder": load_folder, "list": load_list, "table": load_table, "text": load_text}


def format_of(spec: dict) -> str | None:
    """The format a data table names (``folder``, ``list``, ``table``), if any."""
    return next((k for k in LOADERS if k in spec), None)


# ---- identity

@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's contents (cached while its size and mtime stay)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def fingerprint(spec: dict, base_dir: Path | None) -> dict[str, str]:
    """What a data table's numbers depend on beyond the table itself: the contents of its
    ``.npz``, list or table file, and for image folders and lists the images' key (paths,
    sizes and modification times)."""
    kind = format_of(spec) or ("npz" if "npz" in spec else None)
    if kind is None:
        return {}
    path = resolve_path(spec[kind], base_dir)
    out = {}
    if kind != "folder":
        out[str(spec[kind])] = file_digest(path)
    images: list[Path] = []
    if kind == "folder" and path.is_dir():
        images = _images_in(path)
    elif kind == "list" and path.is_file():
        root = resolve_path(spec["root"], base_dir) if "root" in spec else path.parent
        images = [root / line.rsplit(maxsplit=1)[0]
                  for line in path.read_text(errors="replace").splitlines()
                  if len(line.split()) >= 2]
    if images:
        try:
            out[f"{spec[kind]}#images"] = cache_key(images, None, 0)
        except OSError:
            out[f"{spec[kind]}#images"] = "missing"
    return out
