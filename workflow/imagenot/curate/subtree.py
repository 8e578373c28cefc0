"""WordNet subtree statistics of class lists: the paper's Table 3 and the data of Figures 11-12.

``imagenot table3 --wordnet-root R --classes A.txt --classes B.txt --names ImageNot ImageNet
--out table3.csv --out table3.md --out table3.tex`` computes, for each class list, the
statistics of the WordNet subtree its synsets span. A class list is a text file with one wnid
per line (the first whitespace-separated token of each line; blank lines and ``#`` comments
are ignored), a parquet or CSV file with a ``wnid`` column (e.g. ``results/curate/classes.parquet``),
or ``builtin:imagenet-1k`` for the 1000 ILSVRC-2012 wnids that timm ships. A wnid that is not
a WordNet 3.0 noun synset, or a wnid listed twice, is an error naming it.

Definitions. With ImageNet-1k they give the paper's ImageNet column of Table 3 exactly
(nodes 1860, edges 1937, depth 4 / 10 / 17, density 5.60e-4, modularity 0.93):

- **subtree**: the union of every hypernym path (NLTK ``Synset.hypernym_paths()``: all
  inheritance paths, through hypernyms and instance hypernyms) from each class synset up to
  the root ``entity.n.01``, as a directed graph parent -> child. **Nodes** and **Edges** are
  its sizes; a synset with two parents contributes two edges, so Edges can exceed Nodes - 1.
- **depth** of a class: WordNet's ``min_depth()``, the number of edges on the shortest path
  to the root (the root has depth 0); it equals the shortest distance from the root in the
  subtree. **Min / Median / Max Depth** are over the classes (Figure 11 is their histogram).
- **Density**: directed graph density E / (N (N - 1)) (``networkx.density``).
- **Modularity**: Newman modularity of the undirected subtree for the partition found by
  greedy modularity maximisation (Clauset-Newman-Moore,
  ``networkx.community.greedy_modularity_communities``; deterministic).
- **Synset Overlap** and **Parent Overlap** compare a list with the reference list (the
  last one given; the paper's ImageNet). The parents of a list are the distinct direct
  hypernyms (and instance hypernyms) of its classes. Both overlaps are the symmetric
  Sorensen-Dice share 2 |A & B| / (|A| + |B|), so the reference column, when exactly two
  lists are compared, shows the same value, as in the paper. The counts behind them
  (Classes, Parents, Shared Parents) are extra rows after the paper's rows, with Leaf Classes
  (classes no other class of the list descends from).
- **siblings** of a class (Figure 12): the distinct other nodes of the subtree that share a
  parent with it.

With exactly two lists a ratio column (first / second) follows, as in the paper.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import InputError, write_csv, write_text

log = logging.getLogger(__name__)

BUILTIN_IMAGENET = "builtin:imagenet-1k"
ROOT = "n00001740"  # entity.n.01

#: the paper's rows, in its order: (row label, key, kind); kind chooses the display format
PAPER_ROWS = [
    ("Nodes", "nodes", "int"),
    ("Edges", "edges", "int"),
    ("Min Depth", "min_depth", "num"),
    ("Median Depth", "median_depth", "num"),
    ("Max Depth", "max_depth", "num"),
    ("Density", "density", "sci"),
    ("Modularity", "modularity", "fixed2"),
    ("Synset Overlap", "synset_overlap", "pct"),
    ("Parent Overlap", "parent_overlap", "pct"),
]
#: extra rows (not in the paper): the counts behind the overlaps
EXTRA_ROWS = [
    ("Classes", "classes", "int"),
    ("Leaf Classes", "leaf_classes", "int"),
    ("Parents", "parents", "int"),
    ("Shared Parents", "shared_parents", "int"),
]
ROWS = PAPER_ROWS + EXTRA_ROWS
NO_RATIO = {"synset_overlap", "parent_overlap", "shared_parents"}


# ---------------------------------------------------------------------------------------
# class lists


def _wnids_from_text(path: Path) -> list[str]:
    from ..wordnet import parse_wnid

    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        token = line.split("#", 1)[0].strip().split(maxsplit=1)
        if not token:
            continue
        try:
            parse_wnid(token[0])
        except ValueError:
            raise InputError(f"{path}, line {i}: {token[0]!r} is not a wnid "
                             "(expected a pos letter and 8 digits, e.g. n02084071)") from None
        out.append(token[0])
    return out


def read_class_list(spec: str | Path) -> list[str]:
    """The wnids of a class list: a text file, a parquet/CSV with a ``wnid`` column, or
    ``builtin:imagenet-1k``. Order is kept; a wnid listed twice is an error."""
    if str(spec) == BUILTIN_IMAGENET:
        from .filters import imagenet_wnids

        wnids, source = imagenet_wnids(), "ImageNet-1k (timm imagenet_synsets.txt)"
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"{path}: class list not found (a wnid per line, a parquet/CSV with a "
                             f"'wnid' column, or {BUILTIN_IMAGENET})")
        source = str(path)
        if path.suffix in (".parquet", ".csv"):
            try:
                df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
            except Exception as e:  # noqa: BLE001 - any reader failure is bad input
                raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
            if "wnid" not in df.columns:
                raise InputError(f"{path}: no 'wnid' column (columns: {list(df.columns)})")
            if df["wnid"].isna().any():
                raise InputError(f"{path}: column 'wnid' has {int(df['wnid'].isna().sum())} empty value(s)")
            wnids = [str(w).strip() for w in df["wnid"]]
        else:
            wnids = _wnids_from_text(path)
    if not wnids:
        raise InputError(f"{source}: the class list is empty")
    seen, dup = set(), []
    for w in wnids:
        if w in seen and w not in dup:
            dup.append(w)
        seen.add(w)
    if dup:
        raise InputError(f"{source}: wnid(s) listed more than once: {', '.join(dup[:10])}"
                         + (f" (+{len(dup) - 10} more)" if len(dup) > 10 else ""))
    return wnids


def resolve(reader, wnids: Sequence[str], source: str = "class list") -> list:
    """NLTK noun synsets of ``wnids``; any unknown or non-noun wnid is an InputError naming it."""
    from ..wordnet import parse_wnid

    synsets, unknown, not_noun = [], [], []
    for w in wnids:
        try:
            pos, offset = parse_wnid(w)
        except ValueError:
            unknown.append(str(w))
            continue
        if pos != "n":
            not_noun.append(w)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NLTK warns "No WordNet synset found" and returns None
            try:
                s = reader.synset_from_pos_and_offset(pos, offset)
            except Exception:  # noqa: BLE001 - a garbled line at that offset: not a synset
                s = None
        if s is None:
            unknown.append(w)
        else:
            synsets.append(s)
    if unknown:
        raise InputError(f"{source}: unknown wnid(s), not WordNet 3.0 noun synsets: {', '.join(unknown[:10])}"
                         + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
    if not_noun:
        raise InputError(f"{source}: wnid(s) of non-noun synsets (the subtree is WordNet's noun "
                         f"hierarchy): {', '.join(not_noun[:10])}")
    return synsets


# ---------------------------------------------------------------------------------------
# the subtree and its statistics


def _wnid(s) -> str:
    from ..wordnet import wnid

    return wnid(s)


@dataclass
class Subtree:
    """The WordNet subtree spanned by a class list (node ids are wnids)."""

    classes: list[str]
    graph: object  # networkx.DiGraph, parent -> child
    depth: dict[str, int]  # class wnid -> min_depth
    parents: dict[str, list[str]]  # class wnid -> direct hypernyms
    names: dict[str, str] = field(default_factory=dict)  # node wnid -> synset name

    def leaf_classes(self) -> list[str]:
        return [c for c in self.classes if self.graph.out_degree(c) == 0]

    def parent_set(self) -> set[str]:
        return {p for ps in self.parents.values() for p in ps}

    def siblings(self) -> dict[str, int]:
        """Per class: distinct other subtree nodes that share a parent with it."""
        g = self.graph
        out = {}
        for c in self.classes:
            sib = set()
            for p in g.predecessors(c):
                sib.update(g.successors(p))
            sib.discard(c)
            out[c] = len(sib)
        return out


def build_subtree(synsets: Sequence) -> Subtree:
    """The union of all hypernym paths of ``synsets`` to the root, as a networkx DiGraph."""
    import networkx as nx

    g = nx.DiGraph()
    names: dict[str, str] = {}
    classes, depth, parents = [], {}, {}
    for s in synsets:
        w = _wnid(s)
        classes.append(w)
        g.add_node(w)
        names[w] = s.name()
        depth[w] = int(s.min_depth())
        parents[w] = [_wnid(h) for h in s.hypernyms() + s.instance_hypernyms()]
        for path in s.hypernym_paths():
            ids = [_wnid(x) for x in path]
            for x, i in zip(path, ids):
                names.setdefault(i, x.name())
            nx.add_path(g, ids)
    return Subtree(classes=classes, graph=g, depth=depth, parents=parents, names=names)


def modularity(graph) -> float:
    """Newman modularity of the undirected graph for its greedy (CNM) partition."""
    import networkx as nx

    # CNM breaks ties by node order: build the undirected graph in sorted order so the
    # result does not depend on the order of the class list
    u = nx.Graph()
    u.add_nodes_from(sorted(graph.nodes))
    u.add_edges_from(sorted(tuple(sorted(e)) for e in graph.edges))
    if u.number_of_edges() == 0:
        return float("nan")
    parts = nx.community.greedy_modularity_communities(u)
    return float(nx.community.modularity(u, parts))


def dice(a: set, b: set) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if (a or b) else float("nan")


def subtree_stats(tree: Subtree) -> dict:
    """The statistics of one subtree (no overlaps; see :func:`table3`)."""
    import networkx as nx

    g = tree.graph
    d = list(tree.depth.values())
    return {
        "nodes": g.number_of_nodes(),
        "edges": g.number_of_edges(),
        "min_depth": min(d),
        "median_depth": float(statistics.median(d)),
        "max_depth": max(d),
        "density": float(nx.density(g)),
        "modularity": modularity(g),
        "classes": len(tree.classes),
        "leaf_classes": len(tree.leaf_classes()),
        "parents": len(tree.parent_set()),
    }


def table3(trees: Sequence[Subtree], names: Sequence[str]) -> pd.DataFrame:
    """Table 3: one row per statistic (``ROWS``), one column per list, plus a ratio column
    (first / second) when exactly two lists are given. The last list is the overlap reference."""
    if len(trees) != len(names) or not trees:
        raise InputError(f"table3: {len(trees)} class list(s) but {len(names)} name(s)")
    if len(set(names)) != len(names):
        raise InputError(f"table3: names must differ, got {list(names)}")
    stats = [subtree_stats(t) for t in trees]
    ref = trees[-1]
    for i, (t, st) in enumerate(zip(trees, stats)):
        if len(trees) == 1:
            other = None
        elif i < len(trees) - 1:
            other = ref
        else:
            other = trees[0] if len(trees) == 2 else None
        if other is None:
            st.update(synset_overlap=np.nan, parent_overlap=np.nan, shared_parents=np.nan)
        else:
            pa, pb = t.parent_set(), other.parent_set()
            st.update(synset_overlap=dice(set(t.classes), set(other.classes)),
                      parent_overlap=dice(pa, pb), shared_parents=len(pa & pb))
    rows = []
    for label, key, kind in ROWS:
        row = {"stat": label, "key": key, "kind": kind}
        for n, st in zip(names, stats):
            row[n] = st[key]
        if len(trees) == 2:
            a, b = stats[0][key], stats[1][key]
            row[ratio_name(names)] = (a / b if key not in NO_RATIO and b not in (0, None) and not pd.isna(b)
                                      else np.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    for n in names:
        df[n] = df[n].astype(float)
    return df


def ratio_name(names: Sequence[str]) -> str:
    return f"{names[0]}/{names[1]}"


# ---------------------------------------------------------------------------------------
# output


def _fmt(v, kind: str) -> str:
    if v is None or pd.isna(v):
        return "–"
    if kind == "int":
        return f"{int(round(v))}"
    if kind == "num":
        return f"{v:g}"
    if kind == "sci":
        mant, exp = f"{v:.2e}".split("e")
        return f"{mant}e{int(exp)}"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "ratio":
        return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.2g}"
    return f"{v:.2f}"


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """The table as display strings (the paper's formats)."""
    cols = [c for c in df.columns if c not in ("stat", "key", "kind")]
    out = {"Stat": df["stat"].tolist()}
    for c in cols:
        is_ratio = len(cols) == 3 and c == cols[2] == ratio_name(cols[:2])
        out[c] = [_fmt(v, "ratio" if is_ratio else k) for v, k in zip(df[c], df["kind"])]
    return pd.DataFrame(out)


def to_markdown(df: pd.DataFrame, title: str | None = None) -> str:
    f = formatted(df)
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(f.columns) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(f.columns) - 1)) + "|")
    for r in f.itertuples(index=False):
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    n_extra = len(EXTRA_ROWS)
    lines += ["", f"The last {n_extra} rows are not in the paper. Overlaps: Sorensen-Dice share against "
              f"the last list; depth: WordNet min_depth (root = 0)."]
    return "\n".join(lines) + "\n"


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "–": "--"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def to_latex(df: pd.DataFrame, title: str | None = None) -> str:
    f = formatted(df)
    ncol = len(f.columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if title:
        lines.append(rf"\caption{{{_tex(title)}}}")
    lines += [r"\begin{tabular}{l" + "r" * (ncol - 1) + "}", r"\hline",
              " & ".join(_tex(c) for c in f.columns) + r" \\", r"\hline"]
    for i, r in enumerate(f.itertuples(index=False)):
        if i == len(PAPER_ROWS):
            lines.append(r"\hline")
        lines.append(" & ".join(_tex(x) for x in r) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, outs: Sequence[str | Path], title: str | None = None) -> None:
    """Write the table to each path by suffix: .csv (raw values), .md, .tex (display formats)."""
    for out in outs:
        out = Path(out)
        if out.suffix == ".csv":
            write_csv(df.drop(columns=["kind"]), out)
        elif out.suffix == ".md":
            write_text(to_markdown(df, title), out)
        elif out.suffix == ".tex":
            write_text(to_latex(df, title), out)
        else:
            raise InputError(f"--out {out}: unknown table format (use .csv, .md or .tex)")


# ---------------------------------------------------------------------------------------
# the whole step, for the CLI and other stages


def load_lists(wordnet_root: str | Path, specs: Sequence[str], names: Sequence[str] | None = None):
    """(names, subtrees) of the class lists ``specs``."""
    from .. import wordnet

    if names and len(names) != len(specs):
        raise InputError(f"--names: {len(names)} name(s) for {len(specs)} --classes list(s)")
    names = list(names) if names else [default_name(s) for s in specs]
    reader = wordnet.load(wordnet_root)
    trees = []
    for spec in specs:
        wnids = read_class_list(spec)
        trees.append(build_subtree(resolve(reader, wnids, source=str(spec))))
    return names, trees


def default_name(spec: str) -> str:
    return "ImageNet" if str(spec) == BUILTIN_IMAGENET else Path(spec).stem


def cmd_table3(args: argparse.Namespace) -> int:
    names, trees = load_lists(args.wordnet_root, args.classes, args.names)
    df = table3(trees, names)
    title = args.title or f"WordNet subtree statistics: {', '.join(names)}"
    write_table(df, args.out, title)
    for label, key, kind in PAPER_ROWS:
        row = df.loc[df["key"] == key].iloc[0]
        log.info("%-15s %s", label, "  ".join(f"{n}={_fmt(row[n], kind)}" for n in names))
    log.info("wrote %s", ", ".join(map(str, args.out)))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("table3", help="Table 3: WordNet subtree statistics of class lists",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wordnet-root", required=True, help="NLTK data root holding corpora/wordnet (WordNet 3.0)")
    p.add_argument("--classes", action="append", required=True, metavar="LIST",
                   help=f"a class list (repeat; the last is the overlap reference): a text file with a wnid per "
                        f"line, a parquet/CSV with a 'wnid' column, or {BUILTIN_IMAGENET}")
    p.add_argument("--names", nargs="+", help="column names, one per --classes (default: file stems)")
    p.add_argument("--out", action="append", required=True, metavar="PATH",
                   help="output table, format by suffix: .csv, .md, .tex (repeat)")
    p.add_argument("--title", help="table caption")
    p.set_defaults(func=cmd_table3)
