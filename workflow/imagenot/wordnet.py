"""WordNet 3.0 as an NLTK corpus, provisioned without the network where possible.

ImageNet's wnids are WordNet 3.0 noun offsets, so the whole workflow needs exactly that
version. ``provision(root)`` makes ``<root>/corpora/wordnet/`` an NLTK WordNet 3.0 corpus,
trying in order:

(a) an NLTK ``wordnet`` corpus that already sits on ``nltk.data.path`` (a directory or
    ``wordnet.zip``), copied;
(b) ``nltk.download('wordnet')`` into a temporary directory, when the NLTK data server
    answers within a short timeout (an offline machine fails fast instead of hanging);
(c) Debian's ``wordnet-base`` + ``wordnet-sense-index`` (``/usr/share/wordnet``), laid out
    as NLTK expects, plus the ``lexnames`` file Debian does not ship (parsed from the
    lexnames(5WN) man page, or from the built-in table of the 45 WordNet 3.0
    lexicographer files).

The corpus is built in a temporary directory and renamed into place, so an interrupted
run never leaves a half-built corpus. ``load(root)`` returns NLTK's reader on it.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import shutil
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from .io import InputError, atomic_dir

log = logging.getLogger(__name__)

WORDNET_VERSION = "3.0"
DEBIAN_DIR = Path("/usr/share/wordnet")
LEXNAMES_MANPAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")

#: the files NLTK's WordNetCorpusReader opens (nltk.corpus.reader.wordnet._FILES)
NLTK_FILES = (
    "cntlist.rev",
    "lexnames",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

#: the 45 lexicographer files of WordNet 3.0 (lexnames(5WN)); index = file number
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

HOW_TO_PROVIDE = (
    "WordNet 3.0 is needed and none of the three sources worked. Provide it one of these ways:\n"
    "  1. put an NLTK 'wordnet' corpus (WordNet 3.0) on NLTK's data path, e.g. "
    "python -m nltk.downloader -d ~/nltk_data wordnet on a machine with the network;\n"
    "  2. run with network access so that nltk.download('wordnet') can reach the NLTK data server;\n"
    "  3. apt-get install wordnet-base wordnet-sense-index (Debian/Ubuntu; files in /usr/share/wordnet)."
)


# ---------------------------------------------------------------------------------------
# wnids


def wnid(synset) -> str:
    """ImageNet-style id of an NLTK synset: pos letter + zero-padded offset ('n02084071')."""
    pos = synset.pos()
    return f"{'a' if pos == 's' else pos}{synset.offset():08d}"


_WNID_RE = re.compile(r"^([nvar])(\d{8})$")


def parse_wnid(w: str) -> tuple[str, int]:
    """'n02084071' -> ('n', 2084071). Raises ValueError for anything else."""
    m = _WNID_RE.match(w) if isinstance(w, str) else None
    if m is None:
        raise ValueError(f"not a wnid (expected a pos letter and 8 digits, e.g. n02084071): {w!r}")
    return m.group(1), int(m.group(2))


def synset_from_wnid(reader, w: str):
    """The NLTK synset of a wnid (inverse of ``wnid``)."""
    pos, offset = parse_wnid(w)
    return reader.synset_from_pos_and_offset(pos, offset)


# ---------------------------------------------------------------------------------------
# provisioning


def corpus_dir(root: str | os.PathLike) -> Path:
    return Path(root) / "corpora" / "wordnet"


def read_version(directory: Path) -> str | None:
    """Version named in the licence header of ``data.adj`` (what NLTK's get_version reads)."""
    path = Path(directory) / "data.adj"
    if not path.is_file():
        return None
    with open(path, encoding="latin-1") as fh:
        for i, line in enumerate(fh):
            m = re.search(r"Word[nN]et (\d+\+?|\d+\.\d+) Copyright", line)
            if m:
                return m.group(1)
            if i > 60:  # the header is ~30 lines
                break
    return None


def is_complete(directory: Path) -> bool:
    directory = Path(directory)
    return all((directory / f).is_file() for f in NLTK_FILES) and read_version(directory) == WORDNET_VERSION


def provision(root: str | os.PathLike, *, download: bool = True, timeout: float = 10.0,
              debian_dir: str | os.PathLike = DEBIAN_DIR) -> Path:
    """Make ``<root>/corpora/wordnet`` a WordNet 3.0 NLTK corpus; return its path.

    An existing complete corpus is kept. Raises InputError listing the ways to provide
    WordNet when no source works.
    """
    target = corpus_dir(root)
    if target.is_dir() and is_complete(target):
        return target
    if target.exists():
        log.warning("%s is incomplete or not WordNet %s; rebuilding it", target, WORDNET_VERSION)
    failures: list[str] = []
    for name, fn in (
        ("existing NLTK data", lambda tmp: _from_nltk_data(tmp, exclude=Path(root))),
        ("nltk.download", lambda tmp: _from_download(tmp, timeout) if download else "download disabled"),
        ("Debian wordnet-base", lambda tmp: _from_debian(tmp, Path(debian_dir))),
    ):
        try:
            with atomic_dir(target) as tmp:  # renamed onto target only if no exception
                why = fn(tmp)
                if why is None and not is_complete(tmp):
                    missing = [f for f in NLTK_FILES if not (tmp / f).is_file()]
                    why = (f"result incomplete (missing {missing})" if missing
                           else f"not WordNet {WORDNET_VERSION} (version {read_version(tmp)!r})")
                if why is not None:
                    raise _NotThisWay(why)
        except _NotThisWay as e:
            failures.append(f"{name}: {e}")
            log.info("WordNet source %s not usable: %s", name, e)
            continue
        log.info("WordNet %s provisioned in %s from %s", WORDNET_VERSION, target, name)
        return target
    raise InputError(f"cannot provision {target}.\n" + "\n".join(f"  - {f}" for f in failures)
                     + "\n" + HOW_TO_PROVIDE)


class _NotThisWay(Exception):
    pass


def _from_nltk_data(tmp: Path, exclude: Path) -> str | None:
    import nltk

    exclude = exclude.resolve()
    seen = []
    for entry in list(nltk.data.path):
        base = Path(str(getattr(entry, "path", entry))).expanduser()
        try:
            if base.resolve() == exclude:
                continue
        except OSError:
            continue
        d, z = base / "corpora" / "wordnet", base / "corpora" / "wordnet.zip"
        if d.is_dir() and is_complete(d):
            _copy_files(d, tmp)
            return None
        if d.is_dir():
            seen.append(f"{d} (incomplete or version {read_version(d)!r})")
        if z.is_file():
            why = _unzip_wordnet(z, tmp)
            if why is None:
                return None
            seen.append(f"{z} ({why})")
    return "none found on nltk.data.path" + (f"; unusable: {', '.join(seen)}" if seen else "")


def _copy_files(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)


def _unzip_wordnet(zip_path: Path, tmp: Path) -> str | None:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                name = Path(info.filename)
                if info.is_dir() or len(name.parts) != 2 or name.parts[0] != "wordnet":
                    continue
                with zf.open(info) as src, open(tmp / name.name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, OSError) as e:
        return f"unreadable zip: {e}"
    if not is_complete(tmp):
        for f in tmp.iterdir():
            f.unlink()
        return "incomplete or not WordNet 3.0"
    return None


def _from_download(tmp: Path, timeout: float) -> str | None:
    import nltk
    from nltk.downloader import Downloader

    url = urlparse(Downloader.DEFAULT_URL)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"NLTK data server {host}:{port} unreachable ({e.__class__.__name__}: {e})"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    dl = tmp / "download"
    try:
        ok = nltk.download("wordnet", download_dir=str(dl), quiet=True, raise_on_error=True)
    except Exception as e:  # network errors surface as many types; all mean "not this way"
        return f"download failed ({e.__class__.__name__}: {e})"
    finally:
        socket.setdefaulttimeout(old)
    if not ok:
        return "download failed"
    d, z = dl / "corpora" / "wordnet", dl / "corpora" / "wordnet.zip"
    try:
        if d.is_dir():
            _copy_files(d, tmp)
            return None
        if z.is_file():
            return _unzip_wordnet(z, tmp)
        return "download finished but no corpora/wordnet found"
    finally:
        shutil.rmtree(dl, ignore_errors=True)


def _from_debian(tmp: Path, debian_dir: Path) -> str | None:
    if not debian_dir.is_dir():
        return f"{debian_dir} does not exist"
    needed = [f for f in NLTK_FILES if f != "lexnames"]
    missing = [f for f in needed if not (debian_dir / f).is_file()]
    if missing:
        return f"{debian_dir} lacks {', '.join(missing)}"
    version = read_version(debian_dir)
    if version != WORDNET_VERSION:
        return f"{debian_dir} is WordNet {version!r}, not {WORDNET_VERSION}"
    for f in needed:
        shutil.copy2(debian_dir / f, tmp / f)
    (tmp / "lexnames").write_text(lexnames_text())
    return None


def lexnames_text(manpage: Path = LEXNAMES_MANPAGE) -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` for the 45 lexicographer files."""
    names = list(LEXNAMES)
    try:
        parsed = _parse_lexnames_manpage(manpage)
        if parsed is not None:
            names = parsed
    except OSError:
        pass
    return "".join(f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(names))


def _parse_lexnames_manpage(manpage: Path) -> list[str] | None:
    if not Path(manpage).is_file():
        return None
    with gzip.open(manpage, "rt", encoding="latin-1") as fh:
        text = fh.read()
    entries = {}
    for m in re.finditer(r"^(\d\d)\t((?:noun|verb|adj|adv)\.\w+)\s*\t", text, flags=re.M):
        entries[int(m.group(1))] = m.group(2)
    names = [entries.get(i) for i in range(len(LEXNAMES))]
    if len(entries) != len(LEXNAMES) or None in names:
        log.warning("could not parse 45 lexicographer files from %s; using the built-in table", manpage)
        return None
    return names


# ---------------------------------------------------------------------------------------
# loading

_READERS: dict[str, object] = {}


def load(root: str | os.PathLike):
    """NLTK's WordNetCorpusReader on ``<root>/corpora/wordnet`` (WordNet 3.0).

    ``root`` is put on ``nltk.data.path`` first: NLTK 3.10 refuses to read files outside
    its data roots.
    """
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = Path(root).resolve()
    directory = corpus_dir(root)
    key = str(directory)
    if key in _READERS:
        return _READERS[key]
    if not is_complete(directory):
        raise InputError(f"{directory}: not a WordNet {WORDNET_VERSION} NLTK corpus "
                         f"(run `imagenot wordnet --root {root}` first)")
    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.insert(0, str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
        reader = WordNetCorpusReader(str(directory), None)
    version = reader.get_version()
    if version != WORDNET_VERSION:
        raise InputError(f"{directory}: WordNet version {version!r}, need {WORDNET_VERSION} "
                         "(ImageNet wnids are WordNet 3.0 offsets)")
    _READERS[key] = reader
    return reader


# ---------------------------------------------------------------------------------------
# CLI


def add_commands(sub) -> None:
    p = sub.add_parser("wordnet", help="provision WordNet 3.0 as an NLTK corpus under --root",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="NLTK data root; the corpus goes to ROOT/corpora/wordnet")
    p.add_argument("--no-download", action="store_true", help="never try nltk.download")
    p.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds for nltk.download")
    p.set_defaults(func=_cmd_wordnet)


def _cmd_wordnet(args) -> int:
    path = provision(args.root, download=not args.no_download, timeout=args.timeout)
    reader = load(args.root)
    print(f"{path}: WordNet {reader.get_version()}")
    return 0

