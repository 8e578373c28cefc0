"""``imagenot analyze``: the paper's ranking analysis on a user's own table of accuracies.

No training: give a CSV with one row per (model, dataset) and columns ``model, dataset,
accuracy`` (and optionally ``n_test``, the test-set size), and get

- ``accuracies``: the input, validated, with Clopper-Pearson intervals where ``n_test`` is given;
- ``correlation_spearman`` / ``correlation_kendall``: the cross-dataset rank-correlation matrix
  (every pair of datasets, on the models both have) and ``correlation_pairs`` (long form with
  p-values and the number of shared models);
- ``rank_agreement``: each dataset against the reference dataset: Spearman, Kendall,
  relative improvement ``X_i / X_baseline`` fit (slope, intercept, Pearson R); with
  ``n_test`` also parametric-bootstrap intervals (each accuracy redrawn as
  Binomial(n_test, accuracy) / n_test, independently: the per-example predictions that a
  paired bootstrap would need are not in such a table);
- ``relative_improvement``: ``X_i / X_baseline`` per model and dataset;
- figures ``correlation_matrix`` and ``relative_improvement`` (PNG and PDF).

Every table is written as CSV, Markdown and LaTeX.

Input checks (each an error naming the file, row and column): missing column, empty file,
non-numeric or missing accuracy, duplicate (model, dataset) rows, accuracies outside [0, 1],
fewer than three models. Percentages: a column whose values lie in [0, 100] with some above
1 is refused with a message suggesting ``--percent`` (which divides by 100 and says so in
the log); accuracies are never rescaled silently.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .io import InputError
from .tables import write_table

log = logging.getLogger(__name__)

REQUIRED = ("model", "dataset", "accuracy")
PALETTE = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:olive", "tab:cyan"]


def read_results(path: str | Path, percent: bool = False) -> pd.DataFrame:
    """Read and validate a user's results CSV; return ``model, dataset, accuracy[, n_test]``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype={"model": str, "dataset": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    for c in REQUIRED:
        if c not in df.columns:
            raise InputError(f"{path}: missing column '{c}' (has {', '.join(df.columns)}); "
                             f"need {', '.join(REQUIRED)} and optionally n_test")
    if df.empty:
        raise InputError(f"{path}: no rows")
    cols = list(REQUIRED) + (["n_test"] if "n_test" in df.columns else [])
    df = df[cols].copy()
    for c in ("model", "dataset"):
        bad = df[c].isna() | (df[c].astype(str).str.strip() == "")
        if bad.any():
            raise InputError(f"{path}: row {_row(df, bad)}: column '{c}' is empty")
        df[c] = df[c].astype(str).str.strip()
    acc = pd.to_numeric(df["accuracy"], errors="coerce")
    bad = acc.isna() | ~np.isfinite(acc)
    if bad.any():
        i = _first(bad)
        raise InputError(f"{path}: row {i + 2}: column 'accuracy' is not a number: {df['accuracy'].iloc[i]!r}")
    if percent:
        if (acc < 0).any() or (acc > 100).any():
            i = _first((acc < 0) | (acc > 100))
            raise InputError(f"{path}: row {i + 2}: column 'accuracy' = {acc.iloc[i]:g} is outside [0, 100] "
                             "(--percent)")
        log.warning("%s: --percent: accuracies divided by 100", path)
        acc = acc / 100.0
    elif (acc > 1).any() and (acc >= 0).all() and (acc <= 100).all():
        i = _first(acc > 1)
        raise InputError(
            f"{path}: row {i + 2}: column 'accuracy' = {acc.iloc[i]:g} looks like a percentage (values up to "
            f"{acc.max():g}); accuracies must be fractions in [0, 1]: divide the column by 100 or pass --percent")
    out_of_range = (acc < 0) | (acc > 1)
    if out_of_range.any():
        i = _first(out_of_range)
        raise InputError(f"{path}: row {i + 2}: column 'accuracy' = {acc.iloc[i]:g} is outside [0, 1]")
    df["accuracy"] = acc.astype(float)
    if "n_test" in df.columns:
        n = pd.to_numeric(df["n_test"], errors="coerce")
        if n.isna().all():
            df = df.drop(columns="n_test")
        else:
            bad = n.isna() | (n <= 0) | (n != np.floor(n))
            if bad.any():
                i = _first(bad)
                raise InputError(f"{path}: row {i + 2}: column 'n_test' must be a positive integer "
                                 f"(got {df['n_test'].iloc[i]!r})")
            df["n_test"] = n.astype(int)
            k = df["accuracy"] * df["n_test"]
            off = (k - np.rint(k)).abs() > 1e-6 * np.maximum(1.0, k)
            if off.any():
                i = _first(off)
                log.warning("%s: row %d: accuracy %.6g x n_test %d is not a whole number of examples; intervals "
                            "use the nearest count", path, i + 2, df["accuracy"].iloc[i], df["n_test"].iloc[i])
    dup = df.duplicated(["model", "dataset"], keep=False)
    if dup.any():
        rows = [str(i + 2) for i in np.flatnonzero(dup.to_numpy())]
        r = df[dup].iloc[0]
        raise InputError(f"{path}: model '{r['model']}' on dataset '{r['dataset']}' appears more than once "
                         f"(rows {', '.join(rows[:6])}); give one accuracy per (model, dataset), e.g. the mean over seeds")
    n_models = df["model"].nunique()
    if n_models < stats.MIN_MODELS:
        raise InputError(f"{path}: column 'model' has {n_models} distinct model(s); rank correlations need at "
                         f"least {stats.MIN_MODELS}")
    if df["dataset"].nunique() < 2:
        raise InputError(f"{path}: column 'dataset' has only '{df['dataset'].iloc[0]}'; need two or more datasets "
                         "to compare rankings")
    return df.reset_index(drop=True)


def _first(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _row(df, mask) -> int:
    return _first(mask) + 2  # 1-based, after the header line


def choose_reference(df: pd.DataFrame, reference: str | None) -> str:
    datasets = sorted(df["dataset"].unique())
    if reference is not None:
        if reference not in datasets:
            raise InputError(f"--reference: dataset '{reference}' is not in the CSV (has {', '.join(datasets)})")
        return reference
    lower = {d.lower(): d for d in datasets}
    if "imagenet" in lower:
        chosen = lower["imagenet"]
    else:
        counts = df.groupby("dataset")["model"].nunique()
        chosen = sorted(datasets, key=lambda d: (-counts[d], d))[0]
    log.info("reference dataset: %s (choose another with --reference)", chosen)
    return chosen


def choose_baseline(df: pd.DataFrame, reference: str, baseline: str | None) -> str:
    ref_models = df[df["dataset"] == reference].set_index("model")["accuracy"]
    if baseline is not None:
        if baseline not in ref_models.index:
            raise InputError(f"--baseline: model '{baseline}' has no accuracy on the reference dataset '{reference}'")
        chosen = baseline
    else:
        lower = {m.lower(): m for m in ref_models.index}
        chosen = lower.get("alexnet") or ref_models.sort_values(kind="mergesort").index[0]
        log.info("baseline model: %s (choose another with --baseline)", chosen)
    if ref_models[chosen] <= 0:
        raise InputError(f"--baseline: model '{chosen}' has accuracy 0 on '{reference}'; relative improvement "
                         "needs a positive baseline")
    return chosen


def accuracy_table(df: pd.DataFrame, confidence: float) -> pd.DataFrame:
    out = df.sort_values(["dataset", "accuracy", "model"], kind="mergesort").reset_index(drop=True)
    if "n_test" in out.columns:
        k = np.rint(out["accuracy"] * out["n_test"]).astype(int)
        low, high = stats.clopper_pearson_array(k, out["n_test"].to_numpy(), confidence)
        out["accuracy_low"], out["accuracy_high"] = low, high
    return out


def correlation_tables(wide: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rho, rho_p, count = stats.correlation_matrix(wide, "spearman")
    tau, tau_p, _ = stats.correlation_matrix(wide, "kendall")
    pairs = []
    for a, b in itertools.combinations(wide.columns, 2):
        pairs.append({"dataset_a": a, "dataset_b": b, "n_models": int(count.loc[a, b]),
                      "spearman_rho": rho.loc[a, b], "spearman_p": rho_p.loc[a, b],
                      "kendall_tau": tau.loc[a, b], "kendall_p": tau_p.loc[a, b]})
    return {"correlation_spearman": rho.rename_axis("dataset").reset_index(),
            "correlation_kendall": tau.rename_axis("dataset").reset_index(),
            "correlation_pairs": pd.DataFrame(pairs)}


def agreement_table(df: pd.DataFrame, wide: pd.DataFrame, reference: str, baseline: str, n_bootstrap: int,
                    confidence: float, seed: int) -> pd.DataFrame:
    rows = []
    n_test = df.pivot(index="model", columns="dataset", values="n_test") if "n_test" in df.columns else None
    for k, ds in enumerate(c for c in wide.columns if c != reference):
        both = wide[[reference, ds]].dropna()
        models = sorted(both.index, key=lambda m: (both.loc[m, reference], m))
        x, y = both.loc[models, reference].to_numpy(), both.loc[models, ds].to_numpy()
        row = {"reference": reference, "dataset": ds, **stats.rank_correlations(x, y), "baseline": baseline}
        fit = {"n": len(models), "slope": math.nan, "intercept": math.nan, "pearson_r": math.nan, "pearson_p": math.nan}
        bidx = models.index(baseline) if baseline in models else None
        if bidx is None:
            log.warning("rank agreement %s vs %s: baseline '%s' missing on %s; no relative-improvement fit",
                        reference, ds, baseline, ds)
        elif y[bidx] <= 0:
            log.warning("rank agreement %s vs %s: baseline '%s' has accuracy 0; no fit", reference, ds, baseline)
            bidx = None
        else:
            fit = stats.linear_fit(x / x[bidx], y / y[bidx])
        row.update({k2: fit[k2] for k2 in ("slope", "intercept", "pearson_r", "pearson_p")})
        if row["n_models"] < stats.MIN_MODELS:
            log.warning("rank agreement %s vs %s: only %d shared model(s); statistics are NaN", reference, ds,
                        row["n_models"])
        if n_test is not None and n_bootstrap > 0 and len(models) >= stats.MIN_MODELS:
            nx = n_test.loc[models, reference].to_numpy()
            ny = n_test.loc[models, ds].to_numpy()
            if np.isfinite(nx).all() and np.isfinite(ny).all():
                rng = np.random.default_rng([seed, k])
                xs = rng.binomial(nx.astype(int), x, size=(n_bootstrap, len(models))) / nx
                ys = rng.binomial(ny.astype(int), y, size=(n_bootstrap, len(models))) / ny
                bs = stats.agreement_intervals(xs, ys, bidx, confidence)
                row.update({c: bs[c] for c in bs if not c.endswith("_valid")})
        row["models"] = ";".join(models)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_correlation_matrix(rho: pd.DataFrame, count: pd.DataFrame, title: str):
    from .aggregate import _figure

    n = len(rho)
    fig, ax = _figure(1, 1, (1.2 * n + 3, 1.0 * n + 2.2))
    im = ax.imshow(rho.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(rho.columns, rotation=30, ha="right")
    ax.set_yticklabels(rho.index)
    for i in range(n):
        for j in range(n):
            v = rho.iloc[i, j]
            txt = "—" if not np.isfinite(v) else f"{v:.2f}"
            ax.text(j, i, f"{txt}\nn={int(count.iloc[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) and abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Spearman ρ")
    ax.set_title(title, fontsize=10)
    return fig


def plot_relative(wide_rel: pd.DataFrame, agreement: pd.DataFrame, reference: str, baseline: str):
    from .aggregate import _figure, _label_points

    fig, ax_rank, ax_fit = _figure(1, 2, (13, 5))
    order = wide_rel[reference].dropna().sort_values(kind="mergesort").index.tolist()
    order += [m for m in wide_rel.index if m not in order]
    pos = {m: i for i, m in enumerate(order)}
    ref_pts = sorted((pos[m], v) for m, v in wide_rel[reference].dropna().items())
    ax_rank.plot([p for p, _ in ref_pts], [v for _, v in ref_pts], "ks-", label=f"{reference} (reference)")
    others = [c for c in wide_rel.columns if c != reference]
    for k, ds in enumerate(others):
        col = PALETTE[k % len(PALETTE)]
        s = wide_rel[ds].dropna()
        xs = sorted((pos[m], v) for m, v in s.items())
        ax_rank.plot([p for p, _ in xs], [v for _, v in xs], "o--", color=col, label=ds)
        both = wide_rel[[reference, ds]].dropna()
        row = agreement.set_index("dataset").loc[ds]
        txt = (f"slope {row['slope']:.2f}, R {row['pearson_r']:.2f}, ρ {row['spearman_rho']:.2f}"
               if np.isfinite(row["slope"]) else f"ρ {row['spearman_rho']:.2f}, no fit")
        ax_fit.plot(both[reference], both[ds], "o", color=col, label=f"{ds}: {txt}")
        if np.isfinite(row["slope"]):
            gx = np.linspace(both[reference].min(), both[reference].max(), 2)
            ax_fit.plot(gx, row["slope"] * gx + row["intercept"], color=col)
        if k == 0:
            _label_points(ax_fit, list(both.index), both[reference].to_numpy(), both[ds].to_numpy(), col)
    ax_rank.set_xticks(range(len(order)))
    ax_rank.set_xticklabels(order, rotation=30, ha="right")
    ax_rank.set_ylabel(f"Accuracy relative to {baseline}")
    ax_rank.set_title(f"(a) Relative improvement, models in {reference} order")
    ax_rank.axhline(1, color="grey", linestyle=":", linewidth=0.8)
    ax_rank.legend(fontsize=8)
    ax_fit.axline((1, 1), slope=1, color="grey", linestyle=":", linewidth=0.8, label="y = x")
    ax_fit.set_xlabel(f"{reference} accuracy relative to {baseline}")
    ax_fit.set_ylabel(f"Dataset accuracy relative to {baseline}")
    ax_fit.set_title("(b) Relative improvement vs the reference, least-squares fit")
    ax_fit.legend(fontsize=8, loc="upper left")
    for ax in (ax_rank, ax_fit):
        ax.grid(alpha=0.3)
    return fig


def analyze(csv: str | Path, out_dir: str | Path, reference: str | None = None, baseline: str | None = None,
            percent: bool = False, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Run the whole analysis; returns ``{name: DataFrame}`` of the tables written."""
    from .io import save_figure

    df = read_results(csv, percent)
    reference = choose_reference(df, reference)
    baseline = choose_baseline(df, reference, baseline)
    out = Path(out_dir)
    wide = df.pivot(index="model", columns="dataset", values="accuracy")
    wide = wide[[reference] + [c for c in sorted(wide.columns) if c != reference]]
    tables = {"accuracies": accuracy_table(df, confidence), **correlation_tables(wide)}
    tables["rank_agreement"] = agreement_table(df, wide, reference, baseline, n_bootstrap, confidence, seed)
    rel = pd.DataFrame({ds: wide[ds] / wide.loc[baseline, ds] if baseline in wide.index and
                        np.isfinite(wide.loc[baseline, ds]) and wide.loc[baseline, ds] > 0 else np.nan
                        for ds in wide.columns})
    tables["relative_improvement"] = rel.rename_axis("model").reset_index()
    captions = {
        "accuracies": "Accuracies as given" + (" with Clopper-Pearson intervals" if "n_test" in df.columns else ""),
        "correlation_spearman": "Spearman rank correlation between datasets (models shared by both)",
        "correlation_kendall": "Kendall tau-b rank correlation between datasets (models shared by both)",
        "correlation_pairs": "Rank correlation of every pair of datasets with p-values",
        "rank_agreement": f"Rank agreement with {reference}; relative improvement over {baseline}",
        "relative_improvement": f"Accuracy relative to {baseline} on each dataset",
    }
    for name, t in tables.items():
        write_table(t, out / f"{name}.csv", caption=captions[name])
    _, _, count = stats.correlation_matrix(wide, "spearman")
    rho = tables["correlation_spearman"].set_index("dataset")
    save_figure(plot_correlation_matrix(rho, count, f"Spearman rank correlation between datasets ({Path(csv).name})"),
                out / "correlation_matrix.png", out / "correlation_matrix.pdf")
    save_figure(plot_relative(rel, tables["rank_agreement"], reference, baseline),
                out / "relative_improvement.png", out / "relative_improvement.pdf")
    return tables


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.n_bootstrap < 0:
        raise InputError("--n-bootstrap: must be >= 0")
    if not 0 < args.confidence < 1:
        raise InputError("--confidence: must be in (0, 1)")
    tables = analyze(args.csv, args.out_dir, args.reference, args.baseline, args.percent, args.n_bootstrap,
                     args.confidence, args.seed)
    for r in tables["rank_agreement"].to_dict("records"):
        log.info("%s vs %s: n=%d spearman=%.3f kendall=%.3f slope=%.3f R=%.3f", r["reference"], r["dataset"],
                 r["n_models"], r["spearman_rho"], r["kendall_tau"], r["slope"], r["pearson_r"])
    log.info("wrote %d tables (csv, md, tex) and 2 figures (png, pdf) to %s", len(tables), args.out_dir)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="rank agreement, correlation matrix and fits from your own CSV",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", required=True, help="CSV with columns model, dataset, accuracy[, n_test]")
    p.add_argument("--out-dir", required=True, help="directory for the tables and figures")
    p.add_argument("--reference", help="reference dataset (default: imagenet if present, else the one with most models)")
    p.add_argument("--baseline", help="baseline model of the relative improvement (default: alexnet if present, "
                   "else the weakest model on the reference)")
    p.add_argument("--percent", action="store_true", help="accuracies are percentages: divide by 100")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="parametric bootstrap replicates (needs n_test)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_analyze)

