"""Atomic file output and small readers shared by every stage.

Every output of the workflow is written to a temporary file in the same directory and
renamed into place, so an interrupted job never leaves a half-written file that a rerun
would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping


class InputError(ValueError):
    """Bad user input: the message names the file and the field."""


def parse_json(value: Any, what: str, *, obj: bool = False, empty: Any = None) -> Any:
    """A JSON command-line value, decoded; InputError names ``what`` when it is not valid JSON.

    ``what`` is the option (and config section) the value came from, e.g.
    ``"--params (config download)"``. A ``value`` that is not a string (a dict a caller has
    already parsed) is taken as it is. ``obj``: the value must be a JSON object. ``empty``:
    returned (a copy of it) for ``None`` or ``""`` instead of decoding.
    """
    if empty is not None and (value is None or value == ""):
        return copy.copy(empty)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(f"{what}: not valid JSON: {e}") from None
    if obj and not isinstance(value, dict):
        raise InputError(f"{what}: expected a JSON object")
    return value


def check_keys(mapping: Mapping, known: Iterable[str], what: str) -> None:
    """InputError naming the first (sorted) key of ``mapping`` that is not in ``known``."""
    known = list(known)
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise InputError(f"{what}: unknown key {unknown[0]!r}; known keys: {', '.join(known)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffix (``.parquet``, ``.png``...) so writers that
    dispatch on the extension work unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp creates 0600; give the output the usual umask mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(df, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df, path: str | os.PathLike, **kwargs) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(o: Any) -> Any:
    # numpy scalars and paths show up in reports; write them as plain JSON values
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_figure(fig, out_png: str | os.PathLike | None = None, out_pdf: str | os.PathLike | None = None,
                dpi: int = 150) -> None:
    """Write a matplotlib figure atomically as PNG and/or PDF (deterministic bytes: no timestamps)."""
    if out_png:
        with atomic_path(out_png, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    if out_pdf:
        with atomic_path(out_pdf, suffix=".pdf") as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None, "Producer": None})
