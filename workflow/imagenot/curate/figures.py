"""The paper's curation figures (section 3 and Appendix B.1), ``imagenot curation-figures ...``.

- ``fig4``: caption x synset-gloss text similarity per class, summary statistics (min,
  quartiles, mean, max and the mean of the top ``top_n`` that step 7 thresholds), classes
  ordered by that top-n mean, with the threshold; the selected classes are marked. Read
  from step 7's ``results/curate/text_similarity.parquet`` (columns ``wnid``, ``url``,
  ``text_sim``). As in step 7 (``curate.select``), an image URL counts once per class, with
  its best caption. A per-class CSV of the same statistics can be written beside it.
- ``fig5``: the distribution of those similarities for each class (one density curve per
  class; the selected classes when a class list is given, else every class).
- ``fig11``: histogram of the WordNet depth of the classes of each class list (e.g. the
  curated classes and ImageNet-1k); depth as in Table 3 (``min_depth``, root = 0).
- ``fig12``: histogram of the number of siblings of each class in its list's WordNet
  subtree (distinct other subtree nodes sharing a parent; see :mod:`.subtree`).
- ``fig10``: intra-class image similarity, ``fig6``: inter-class image similarity, from
  CLIP image embeddings of each dataset's images (``--embeddings NAME=PATH``, repeatable).
  Embeddings are L2-normalised; a class's intra-class similarity is the mean inner product
  over all pairs of distinct images of the class; its inter-class similarity is the mean
  over the other classes of the mean inner product between an image of the class and an
  image of the other class. Both are computed exactly from the per-class sums of the
  normalised embeddings, streaming the file, so memory does not grow with the number of
  images. An embedding file is an ``.npz`` with arrays ``embeddings`` (n x d) and
  ``labels`` (n), or a parquet with a list column ``embedding`` and a ``label`` or
  ``wnid`` column.

Every figure is written as PNG and PDF (atomically, with no timestamps in the files).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import InputError, parse_json, save_figure, write_csv

log = logging.getLogger(__name__)

TEXT_SIM_COLUMNS = ["wnid", "url", "text_sim"]
EMBED_BATCH_ROWS = 65536


# ---------------------------------------------------------------------------------------
# shared


def new_figure(figsize=(8, 4.5)):
    """A matplotlib Figure on the Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int):
    base = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    return [base[i % len(base)] for i in range(n)]


# ---------------------------------------------------------------------------------------
# Figures 4 and 5: caption x gloss similarity


def read_text_similarity(path: str | Path) -> pd.DataFrame:
    """``wnid``, ``url``, ``text_sim`` of step 7's output, one row per (class, URL): the best caption."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - missing or corrupt file
        raise InputError(f"{path}: cannot read as parquet ({type(e).__name__}: {e})") from e
    missing = [c for c in TEXT_SIM_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: lacks column(s) {missing} (written by `imagenot curate text-similarity`)")
    df = pf.read(columns=TEXT_SIM_COLUMNS).to_pandas()
    if df["text_sim"].isna().any():
        raise InputError(f"{path}: column 'text_sim' has {int(df['text_sim'].isna().sum())} null value(s)")
    df = df.sort_values(["wnid", "url", "text_sim"], ascending=[True, True, False], kind="stable")
    return df.drop_duplicates(["wnid", "url"], keep="first").reset_index(drop=True)


def text_similarity_stats(df: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """Per class: n_images and the min, quartiles, mean, max and mean of the top ``top_n``
    text similarities; sorted by that top-n mean (descending), then wnid."""
    if top_n < 1:
        raise InputError(f"top_n must be >= 1, got {top_n}")
    g = df.groupby("wnid", sort=True)["text_sim"]
    stats = pd.DataFrame({
        "n_images": g.size(),
        "min": g.min(),
        "q25": g.quantile(0.25),
        "median": g.median(),
        "mean": g.mean(),
        "q75": g.quantile(0.75),
        "max": g.max(),
    })
    top = (df.sort_values(["wnid", "text_sim"], ascending=[True, False], kind="stable")
           .groupby("wnid", sort=True).head(top_n).groupby("wnid", sort=True)["text_sim"].mean())
    stats["mean_top_n"] = top
    stats = stats.reset_index().sort_values(["mean_top_n", "wnid"], ascending=[False, True], kind="stable")
    return stats.reset_index(drop=True)


def plot_fig4(stats: pd.DataFrame, threshold: float | None, top_n: int, selected: Sequence[str] = (),
              model: str | None = None):
    """Figure 4: per-class summary statistics of caption x gloss similarity."""
    if stats.empty:
        raise InputError("fig4: no classes with captions in the text-similarity table")
    fig = new_figure((10, 4.8))
    ax = fig.add_subplot()
    x = np.arange(1, len(stats) + 1)
    ax.fill_between(x, stats["min"], stats["max"], color="tab:blue", alpha=0.12, lw=0, label="min - max")
    ax.fill_between(x, stats["q25"], stats["q75"], color="tab:blue", alpha=0.3, lw=0, label="25% - 75%")
    ax.plot(x, stats["median"], color="tab:blue", lw=1, label="median")
    ax.plot(x, stats["mean"], color="tab:green", lw=1, ls="--", label="mean")
    ax.plot(x, stats["mean_top_n"], color="black", lw=1.6, label=f"mean of top {top_n} (step 7)")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", lw=1, ls=":", label=f"threshold {threshold:g}")
    sel = set(selected)
    if sel:
        mask = stats["wnid"].isin(sel).to_numpy()
        # a rug along the bottom edge (x in data, y in axes coordinates)
        ax.plot(x[mask], np.full(mask.sum(), 0.015), "|", color="tab:orange", ms=10, mew=1.5,
                transform=ax.get_xaxis_transform(), label=f"selected classes ({int(mask.sum())})")
    ax.set_xlabel(f"class (step-6 synsets, ordered by the mean of their top {top_n})")
    ax.set_ylabel("caption x synset-gloss similarity")
    ax.set_xlim(0.5, len(stats) + 0.5)
    title = f"Figure 4: caption x synset-gloss text similarity per class ({len(stats)} classes)"
    if model:
        title += f"\n{model}"
    ax.set_title(title, fontsize=10)
    fig.legend(fontsize=7, loc="outside right upper")
    return fig


def plot_fig5(df: pd.DataFrame, classes: Sequence[str] | None = None, threshold: float | None = None,
              bins: int = 40, model: str | None = None):
    """Figure 5: the similarity distribution of each class (one density curve per class)."""
    if classes:
        missing = sorted(set(classes) - set(df["wnid"]))
        if missing:
            raise InputError(f"fig5: selected class(es) without captions in the text-similarity table: {missing[:5]}")
        df = df[df["wnid"].isin(set(classes))]
    if df.empty:
        raise InputError("fig5: no captions to plot")
    lo, hi = float(df["text_sim"].min()), float(df["text_sim"].max())
    if hi <= lo:
        hi = lo + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    means = df.groupby("wnid")["text_sim"].mean().sort_values()
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    n = len(means)
    alpha = float(np.clip(8.0 / n, 0.08, 0.9))
    fig = new_figure((8, 4.5))
    ax = fig.add_subplot()
    groups = dict(tuple(df.groupby("wnid")["text_sim"]))
    for i, w in enumerate(means.index):
        h, _ = np.histogram(groups[w].to_numpy(), bins=edges, density=True)
        ax.plot(centers, h, color=cmap(i / max(n - 1, 1)), alpha=alpha, lw=1)
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", lw=1, ls=":", label=f"threshold {threshold:g}")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("caption x synset-gloss similarity")
    ax.set_ylabel("density")
    title = f"Figure 5: similarity distribution of each of {n} classes (colour: class mean)"
    if model:
        title += f"\n{model}"
    ax.set_title(title, fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------
# Figures 11 and 12: WordNet depth and siblings


def wordnet_class_table(names: Sequence[str], trees: Sequence) -> pd.DataFrame:
    """One row per (list, class): wnid, synset name, depth, number of siblings."""
    rows = []
    for n, t in zip(names, trees):
        sib = t.siblings()
        for c in t.classes:
            rows.append({"list": n, "wnid": c, "name": t.names.get(c, ""), "depth": t.depth[c],
                         "siblings": sib[c]})
    return pd.DataFrame(rows, columns=["list", "wnid", "name", "depth", "siblings"])


def plot_fig11(table: pd.DataFrame):
    """Figure 11: histogram of class depth, one bar group per list."""
    names = list(dict.fromkeys(table["list"]))
    lo, hi = int(table["depth"].min()), int(table["depth"].max())
    depths = np.arange(lo, hi + 1)
    width = 0.8 / len(names)
    fig = new_figure((8, 4.5))
    ax = fig.add_subplot()
    for i, (n, c) in enumerate(zip(names, _colors(len(names)))):
        d = table.loc[table["list"] == n, "depth"]
        counts = d.value_counts().reindex(depths, fill_value=0).to_numpy()
        ax.bar(depths + (i - (len(names) - 1) / 2) * width, counts, width=width, color=c,
               label=f"{n} (n={len(d)}, median {d.median():g})")
    ax.set_xticks(depths)
    ax.set_xlabel("synset depth in WordNet (edges to entity.n.01)")
    ax.set_ylabel("classes")
    ax.set_title("Figure 11: synset depth in the WordNet tree", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_fig12(table: pd.DataFrame, bins: int = 30):
    """Figure 12: histogram of the number of siblings of each class in its list's subtree."""
    names = list(dict.fromkeys(table["list"]))
    hi = int(table["siblings"].max())
    width = max(1, -(-(hi + 1) // bins))  # integer-aligned bins, at most ``bins`` of them
    edges = np.arange(0, hi + width + 1, width) - 0.5
    fig = new_figure((8, 4.5))
    ax = fig.add_subplot()
    for n, c in zip(names, _colors(len(names))):
        s = table.loc[table["list"] == n, "siblings"].to_numpy()
        ax.hist(s, bins=edges, color=c, alpha=0.35)
        ax.hist(s, bins=edges, color=c, histtype="step", lw=1.4,
                label=f"{n} (median {np.median(s):g}, mean {s.mean():.1f})")
    ax.set_xlabel("siblings in the class list's WordNet subtree")
    ax.set_ylabel("classes")
    ax.set_title("Figure 12: number of synset siblings", fontsize=10)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------
# Figures 6 and 10: CLIP image similarity


def _accumulate(sums: dict, counts: dict, labels: np.ndarray, emb: np.ndarray, path: Path) -> None:
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or len(emb) != len(labels):
        raise InputError(f"{path}: embeddings must be an (n, d) array with one label per row, "
                         f"got shape {emb.shape} for {len(labels)} label(s)")
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    if (norm == 0).any() or not np.isfinite(emb).all():
        raise InputError(f"{path}: {int((norm[:, 0] == 0).sum())} zero and "
                         f"{int((~np.isfinite(emb)).any(axis=1).sum())} non-finite embedding row(s)")
    emb = emb / norm
    uniq, inv = np.unique(labels, return_inverse=True)
    block = np.zeros((len(uniq), emb.shape[1]))
    np.add.at(block, inv, emb)
    n = np.bincount(inv, minlength=len(uniq))
    for i, u in enumerate(uniq.tolist()):
        if u in sums:
            if sums[u].shape != block[i].shape:
                raise InputError(f"{path}: embedding width changes between rows")
            sums[u] += block[i]
            counts[u] += int(n[i])
        else:
            sums[u] = block[i].copy()
            counts[u] = int(n[i])


def class_sums(path: str | Path) -> tuple[list, np.ndarray, np.ndarray]:
    """(labels, per-class sums of L2-normalised embeddings (C x d), counts (C)) of one file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: embedding file not found")
    sums: dict = {}
    counts: dict = {}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for k in ("embeddings", "labels"):
                if k not in z.files:
                    raise InputError(f"{path}: no array {k!r} (arrays: {z.files})")
            labels, emb = z["labels"], z["embeddings"]
            for s in range(0, len(labels), EMBED_BATCH_ROWS):
                _accumulate(sums, counts, labels[s:s + EMBED_BATCH_ROWS], emb[s:s + EMBED_BATCH_ROWS], path)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path, pre_buffer=False)  # streamed: see curate.match.open_parquet
        cols = pf.schema_arrow.names
        label_col = "label" if "label" in cols else "wnid" if "wnid" in cols else None
        if "embedding" not in cols or label_col is None:
            raise InputError(f"{path}: needs columns 'embedding' and 'label' or 'wnid' (columns: {cols})")
        for batch in pf.iter_batches(batch_size=EMBED_BATCH_ROWS, columns=[label_col, "embedding"]):
            col = batch.column("embedding")
            if batch.column(label_col).null_count or col.null_count:
                raise InputError(f"{path}: null values in column '{label_col}' or 'embedding'")
            emb = np.asarray(col.to_pylist(), dtype=np.float64)
            _accumulate(sums, counts, np.asarray(batch.column(label_col).to_pylist()), emb, path)
    else:
        raise InputError(f"{path}: unknown embedding format (use .npz with 'embeddings' and 'labels', "
                         "or .parquet with 'embedding' and 'label'/'wnid')")
    if not sums:
        raise InputError(f"{path}: no embeddings")
    labels = sorted(sums)
    return labels, np.stack([sums[u] for u in labels]), np.array([counts[u] for u in labels])


def class_similarity(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intra, inter) per class from per-class sums of unit vectors.

    intra_c = mean over pairs of distinct images of c of <x_i, x_j> = (|s_c|^2 - n_c) / (n_c (n_c - 1))
    (NaN for a class with one image); inter_c = mean over the other classes d of <s_c/n_c, s_d/n_d>
    (NaN with a single class)."""
    counts = np.asarray(counts, dtype=np.float64)
    sq = np.einsum("ij,ij->i", sums, sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        intra = np.where(counts > 1, (sq - counts) / (counts * (counts - 1)), np.nan)
    means = sums / counts[:, None]
    c = len(counts)
    if c < 2:
        return intra, np.full(c, np.nan)
    gram = means @ means.T
    inter = (gram.sum(axis=1) - np.diag(gram)) / (c - 1)
    return intra, inter


def image_similarity_table(embeddings: Mapping[str, str | Path]) -> pd.DataFrame:
    """One row per (dataset, class): n_images, intra- and inter-class similarity."""
    rows = []
    for name, path in embeddings.items():
        labels, sums, counts = class_sums(path)
        intra, inter = class_similarity(sums, counts)
        for lab, n, a, e in zip(labels, counts, intra, inter):
            rows.append({"dataset": name, "label": str(lab), "n_images": int(n), "intra": float(a),
                         "inter": float(e)})
        log.info("%s: %d classes, %d images", name, len(labels), int(counts.sum()))
    return pd.DataFrame(rows, columns=["dataset", "label", "n_images", "intra", "inter"])


def plot_image_similarity(table: pd.DataFrame, which: str, bins: int = 30):
    """Figure 10 (``which='intra'``) or Figure 6 (``which='inter'``): per-class histograms."""
    if which not in ("intra", "inter"):
        raise ValueError(which)
    vals = table.dropna(subset=[which])
    if vals.empty:
        raise InputError(f"no {which}-class similarity to plot (classes need >= 2 images, "
                         "and inter-class similarity >= 2 classes)")
    names = list(dict.fromkeys(table["dataset"]))
    lo, hi = float(vals[which].min()), float(vals[which].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
    fig = new_figure((8, 4.5))
    ax = fig.add_subplot()
    for n, c in zip(names, _colors(len(names))):
        v = vals.loc[vals["dataset"] == n, which].to_numpy()
        if not len(v):
            continue
        ax.hist(v, bins=edges, color=c, alpha=0.35)
        ax.hist(v, bins=edges, color=c, histtype="step", lw=1.4,
                label=f"{n} ({len(v)} classes, mean {v.mean():.3f})")
    if which == "intra":
        ax.set_xlabel("average intra-class image similarity (normalised CLIP embeddings)")
        title = "Figure 10: class diversity, average intra-class image similarity"
    else:
        ax.set_xlabel("average inter-class image similarity (normalised CLIP embeddings)")
        title = "Figure 6: image variance, average inter-class image similarity"
    ax.set_ylabel("classes")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------
# CLI


def _selected(spec: str | None) -> list[str]:
    if not spec:
        return []
    from .subtree import read_class_list

    return read_class_list(spec)


def cmd_fig4(args) -> int:
    p = parse_json(args.params, "--params (curation.text_similarity)", obj=True, empty={})
    top_n = int(p.get("top_n", 10))
    df = read_text_similarity(args.text_similarity)
    stats = text_similarity_stats(df, top_n)
    fig = plot_fig4(stats, p.get("threshold"), top_n, _selected(args.classes), p.get("model"))
    save_figure(fig, args.out_png, args.out_pdf)
    if args.out_csv:
        write_csv(stats, args.out_csv)
    log.info("fig4: %d classes -> %s %s", len(stats), args.out_png, args.out_pdf)
    return 0


def cmd_fig5(args) -> int:
    p = parse_json(args.params, "--params (curation.text_similarity)", obj=True, empty={})
    df = read_text_similarity(args.text_similarity)
    fig = plot_fig5(df, _selected(args.classes), p.get("threshold"), model=p.get("model"))
    save_figure(fig, args.out_png, args.out_pdf)
    log.info("fig5 -> %s %s", args.out_png, args.out_pdf)
    return 0


def _wordnet_table(args) -> pd.DataFrame:
    from .subtree import load_lists

    names, trees = load_lists(args.wordnet_root, args.classes, args.names)
    return wordnet_class_table(names, trees)


def cmd_fig11(args) -> int:
    table = _wordnet_table(args)
    save_figure(plot_fig11(table), args.out_png, args.out_pdf)
    if args.out_csv:
        write_csv(table, args.out_csv)
    log.info("fig11 -> %s %s", args.out_png, args.out_pdf)
    return 0


def cmd_fig12(args) -> int:
    table = _wordnet_table(args)
    save_figure(plot_fig12(table), args.out_png, args.out_pdf)
    if args.out_csv:
        write_csv(table, args.out_csv)
    log.info("fig12 -> %s %s", args.out_png, args.out_pdf)
    return 0


def _embedding_specs(items: Sequence[str]) -> dict[str, str]:
    if not items:
        raise InputError("no image embeddings given (--embeddings NAME=PATH): in the workflow, set "
                         "figures.image_embeddings in the config (dataset name -> embedding file)")
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--embeddings {it!r}: expected NAME=PATH")
        if name in out:
            raise InputError(f"--embeddings: dataset {name!r} given twice")
        out[name] = path
    return out


def _cmd_image(which: str):
    def run(args) -> int:
        table = image_similarity_table(_embedding_specs(args.embeddings))
        save_figure(plot_image_similarity(table, which), args.out_png, args.out_pdf)
        if args.out_csv:
            write_csv(table, args.out_csv)
        log.info("%s-class image similarity -> %s %s", which, args.out_png, args.out_pdf)
        return 0

    return run


def add_commands(sub) -> None:
    p = sub.add_parser("curation-figures", help="the paper's curation figures 4, 5, 6, 10, 11, 12",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")

    def outputs(q, csv_help=None):
        q.add_argument("--out-png", required=True)
        q.add_argument("--out-pdf", required=True)
        if csv_help:
            q.add_argument("--out-csv", help=csv_help)

    for name, fn, helptext in (("fig4", cmd_fig4, "caption x gloss similarity statistics per class"),
                               ("fig5", cmd_fig5, "caption x gloss similarity distribution per class")):
        q = s.add_parser(name, help=helptext)
        q.add_argument("--text-similarity", required=True, help="step 7's text_similarity.parquet")
        q.add_argument("--params", help="curation.text_similarity as JSON (top_n, threshold, model)")
        q.add_argument("--classes", help="selected classes (classes.parquet or a wnid list) to mark/plot")
        outputs(q, "per-class statistics CSV" if name == "fig4" else None)
        q.set_defaults(func=fn)

    for name, fn, helptext in (("fig11", cmd_fig11, "histogram of class depth in WordNet"),
                               ("fig12", cmd_fig12, "histogram of the number of siblings of each class")):
        q = s.add_parser(name, help=helptext)
        q.add_argument("--wordnet-root", required=True)
        q.add_argument("--classes", action="append", required=True, metavar="LIST",
                       help="class list (repeat): wnid text file, parquet/CSV with 'wnid', or builtin:imagenet-1k")
        q.add_argument("--names", nargs="+", help="one name per --classes")
        outputs(q, "per-class depth and siblings CSV")
        q.set_defaults(func=fn)

    for name, which, helptext in (("fig10", "intra", "intra-class CLIP image similarity"),
                                  ("fig6", "inter", "inter-class CLIP image similarity")):
        q = s.add_parser(name, help=helptext)
        q.add_argument("--embeddings", action="append", default=[], metavar="NAME=PATH",
                       help="image embeddings of one dataset (.npz embeddings+labels, or parquet embedding+label/wnid)")
        outputs(q, "per-class similarity CSV")
        q.set_defaults(func=_cmd_image(which))
