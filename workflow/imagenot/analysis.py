"""Figures 8 and 9 of the paper: transfer to CIFAR-10, robustness and the ranking panels.

Subcommands (registered under ``imagenot aggregate``):

- ``fig9``: ranking and relative improvement ``X_i / X_baseline`` on clean test sets
  (reference + curated datasets), under test-time augmentations (mean top-1 over the
  augmentations of ``robustness.json``), and one panel per extra dataset (CIFAR-10 trained
  from scratch).
- ``fig8``: CIFAR-10 accuracy after fine-tuning (Figure 8a) or linear transfer (8b) against
  the pretraining test accuracy, one series per pretraining dataset, least-squares line
  with a 95% bootstrap band (resampling models), slope and Pearson R.

Input files (written by the evaluation and transfer stages):

- ``results/eval/{dataset}/{model}/seed{seed}/robustness.json``: ``model, dataset, seed,
  n_test, clean_top1, augmentations {name: top1}, mean_top1``;
- ``results/transfer/{dataset}/{model}/seed{seed}/{finetune,linear}.json``: ``model,
  dataset (pretraining), seed, mode, target, top1, n_test, pretrain_top1, best, trials``.

Readers validate every field and raise :class:`InputError` naming file and field.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import stats
from .aggregate import (_ds_label, _figure, _is_int, _is_number, _label_points, _read_json_file,
                        parse_models, parse_params, read_accuracies, read_reference, save_figure)
from .io import InputError

log = logging.getLogger(__name__)

ROBUSTNESS_FIELDS = ("model", "dataset", "seed", "n_test", "clean_top1", "augmentations", "mean_top1")
TRANSFER_FIELDS = ("model", "dataset", "seed", "mode", "target", "top1", "n_test", "pretrain_top1")
TRANSFER_MODES = ("finetune", "linear")
PALETTE = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]


# =========================================================================== readers


def _check_fraction(v, where: str, field: str) -> float:
    if not _is_number(v) or (isinstance(v, float) and math.isnan(v)):
        raise InputError(f"{where}: field '{field}' must be a number (got {v!r})")
    if not 0.0 <= float(v) <= 1.0:
        raise InputError(f"{where}: field '{field}' = {v!r} is outside [0, 1] (accuracies are fractions)")
    return float(v)


def _check_run_fields(obj, path: Path, fields: Sequence[str]) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object with fields {', '.join(fields)}")
    for f in fields:
        if f not in obj:
            raise InputError(f"{path}: missing field '{f}'")
    for f in ("model", "dataset"):
        if not isinstance(obj[f], str) or not obj[f]:
            raise InputError(f"{path}: field '{f}' must be a non-empty string (got {obj[f]!r})")
    if not _is_int(obj["seed"]):
        raise InputError(f"{path}: field 'seed' must be an integer (got {obj['seed']!r})")
    if not _is_int(obj["n_test"]) or obj["n_test"] <= 0:
        raise InputError(f"{path}: field 'n_test' must be a positive integer (got {obj['n_test']!r})")
    return obj


def read_robustness(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run: ``dataset, model, seed, n_test, clean_top1, mean_top1, n_augmentations``."""
    rows, seen = [], {}
    for p in paths:
        p = Path(p)
        obj = _check_run_fields(_read_json_file(p), p, ROBUSTNESS_FIELDS)
        clean = _check_fraction(obj["clean_top1"], str(p), "clean_top1")
        mean = _check_fraction(obj["mean_top1"], str(p), "mean_top1")
        aug = obj["augmentations"]
        if not isinstance(aug, dict) or not aug:
            raise InputError(f"{p}: field 'augmentations' must be a non-empty object {{name: top1}}")
        vals = [_check_fraction(v, str(p), f"augmentations.{k}") for k, v in aug.items()]
        if abs(float(np.mean(vals)) - mean) > 1e-6:
            raise InputError(f"{p}: field 'mean_top1' = {mean:.6f} is not the mean of 'augmentations' "
                             f"({float(np.mean(vals)):.6f})")
        run = (obj["dataset"], obj["model"], int(obj["seed"]))
        if run in seen:
            raise InputError(f"{p}: run dataset={run[0]} model={run[1]} seed={run[2]} is also in {seen[run]}")
        seen[run] = str(p)
        rows.append({"dataset": run[0], "model": run[1], "seed": run[2], "n_test": int(obj["n_test"]),
                     "clean_top1": clean, "mean_top1": mean, "n_augmentations": len(vals)})
    if not rows:
        raise InputError("--robustness: no robustness.json files given")
    return pd.DataFrame(rows)


def read_transfer(paths: Sequence[str | Path], mode: str) -> pd.DataFrame:
    """One row per run: ``dataset (pretraining), model, seed, target, top1, n_test, pretrain_top1``."""
    if mode not in TRANSFER_MODES:
        raise InputError(f"--mode: must be one of {', '.join(TRANSFER_MODES)} (got {mode!r})")
    rows, seen = [], {}
    for p in paths:
        p = Path(p)
        obj = _check_run_fields(_read_json_file(p), p, TRANSFER_FIELDS)
        if obj["mode"] != mode:
            raise InputError(f"{p}: field 'mode' is {obj['mode']!r}, expected {mode!r}")
        if not isinstance(obj["target"], str) or not obj["target"]:
            raise InputError(f"{p}: field 'target' must be a dataset name (got {obj['target']!r})")
        run = (obj["dataset"], obj["model"], int(obj["seed"]))
        if run in seen:
            raise InputError(f"{p}: run dataset={run[0]} model={run[1]} seed={run[2]} is also in {seen[run]}")
        seen[run] = str(p)
        rows.append({"dataset": run[0], "model": run[1], "seed": run[2], "target": obj["target"],
                     "top1": _check_fraction(obj["top1"], str(p), "top1"), "n_test": int(obj["n_test"]),
                     "pretrain_top1": _check_fraction(obj["pretrain_top1"], str(p), "pretrain_top1")})
    if not rows:
        raise InputError("--transfer: no transfer result files given")
    df = pd.DataFrame(rows)
    targets = sorted(df["target"].unique())
    if len(targets) > 1:
        raise InputError(f"--transfer: results for several targets {targets}; one figure per target")
    return df


def seed_summary(df: pd.DataFrame, value: str, confidence: float = 0.95, n_test: str | None = None) -> pd.DataFrame:
    """Mean over seeds of ``value`` per (dataset, model) with an interval.

    Two or more seeds: Student-t interval of the mean across seeds. One seed: the
    Clopper-Pearson interval of that run's accuracy when ``n_test`` names its test-set size
    column, else no interval (NaN).
    """
    rows = []
    for (ds, m), g in df.groupby(["dataset", "model"], sort=True):
        si = stats.seed_interval(g[value].to_numpy(), confidence)
        if si["n"] >= 2:
            low, high, kind = max(0.0, si["low"]), min(1.0, si["high"]), "seeds"
        elif n_test is not None:
            n = int(g[n_test].iloc[0])
            k = int(round(si["mean"] * n))
            if abs(k / n - si["mean"]) > 1e-6:
                low = high = math.nan
                kind = "none"
            else:
                low, high = stats.clopper_pearson(k, n, confidence)
                kind = "binomial"
        else:
            low = high = math.nan
            kind = "none"
        rows.append({"dataset": ds, "model": m, "n_seeds": si["n"], value: si["mean"], f"{value}_low": low,
                     f"{value}_high": high, "interval": kind})
    return pd.DataFrame(rows)


# =========================================================================== figure 9


def figure9_data(runs: pd.DataFrame, reference: pd.DataFrame, robustness: pd.DataFrame | None,
                 models: Mapping[str, Mapping], baseline: str, panel_datasets: Sequence[str] = (),
                 confidence: float = 0.95, reference_name: str = "imagenet") -> dict:
    """Series of relative improvements for Figure 9's panels (no plotting).

    ``panels``: list of ``(title, [series])``; a series is ``{label, kind, values}`` with
    ``values`` a DataFrame indexed by model (``rel, rel_low, rel_high, top1``). Models are
    ordered by reference accuracy.
    """
    ref = reference.set_index("model")["top1"].astype(float)
    names = [m for m in models]
    if baseline not in names:
        raise InputError(f"--params: baseline_model '{baseline}' is not one of --models: {names}")
    if baseline not in ref.index:
        raise InputError(f"reference table: no accuracy for baseline model '{baseline}'")
    order = sorted((m for m in names if m in ref.index), key=lambda m: (float(ref[m]), names.index(m)))
    order += [m for m in names if m not in ref.index]
    labels = {m: str(models[m].get("display_name") or m) for m in order}

    def relative(tab: pd.DataFrame, col: str, where: str) -> pd.DataFrame:
        tab = tab.set_index("model")
        tab = tab[tab.index.isin(order)]
        if baseline not in tab.index:
            raise InputError(f"{where}: no result for baseline model '{baseline}'")
        base = float(tab.loc[baseline, col])
        if base <= 0:
            raise InputError(f"{where}: baseline model '{baseline}' has {col} = 0")
        return pd.DataFrame({"top1": tab[col], "rel": tab[col] / base, "rel_low": tab[f"{col}_low"] / base,
                             "rel_high": tab[f"{col}_high"] / base})

    ref_series = {"label": f"{_ds_label(reference_name)} (reference)", "kind": "reference",
                  "values": pd.DataFrame({"top1": ref[[m for m in order if m in ref.index]],
                                          "rel": ref[[m for m in order if m in ref.index]] / float(ref[baseline]),
                                          "rel_low": math.nan, "rel_high": math.nan})}
    clean = stats.summarize_seeds(runs[runs["model"].isin(order)], confidence)
    clean = clean.rename(columns={"top1_std": "std"})
    datasets = sorted(clean["dataset"].unique())
    main = [d for d in datasets if d not in panel_datasets]
    extra = [d for d in datasets if d in panel_datasets]
    rob = None
    if robustness is not None and len(robustness):
        rob = seed_summary(robustness[robustness["model"].isin(order)], "mean_top1", confidence)

    def ds_series(ds: str) -> list[dict]:
        out = [{"label": f"{_ds_label(ds)}", "kind": "clean",
                "values": relative(clean[clean["dataset"] == ds], "top1", f"accuracy table, dataset '{ds}'")}]
        return out

    def rob_series(ds: str) -> list[dict]:
        if rob is None or ds not in set(rob["dataset"]):
            return []
        sub = rob[rob["dataset"] == ds].set_index("model")
        if baseline in sub.index and float(sub.loc[baseline, "mean_top1"]) <= 0:
            # relative improvement is undefined: leave the panel out rather than draw a wrong number
            log.warning("robustness results, dataset '%s': baseline model '%s' has mean_top1 = 0 under the "
                        "test-time augmentations; the robust series is left out of Figure 9", ds, baseline)
            return []
        return [{"label": f"{_ds_label(ds)} robust", "kind": "robust",
                 "values": relative(rob[rob["dataset"] == ds], "mean_top1", f"robustness results, dataset '{ds}'")}]

    panels = [("Clean test set", [ref_series] + [s for d in main for s in ds_series(d)])]
    robust = [s for d in main for s in rob_series(d)]
    if robust:
        n_aug = sorted(set(robustness["n_augmentations"]))
        panels.append((f"Robust: mean over {'/'.join(map(str, n_aug))} test-time augmentations", robust))
    for d in extra:
        panels.append((f"{_ds_label(d)}, trained from scratch", ds_series(d) + rob_series(d)))
    agreement = {}
    for _, series in panels:
        for s in series:
            if s["kind"] == "reference":
                continue
            v = s["values"]
            common = [m for m in order if m in v.index and m in ref.index]
            agreement[s["label"]] = {
                **stats.rank_correlations(ref[common].to_numpy(), v.loc[common, "top1"].to_numpy()),
                **{f"fit_{k}": x for k, x in stats.linear_fit(ref[common].to_numpy() / float(ref[baseline]),
                                                             v.loc[common, "rel"].to_numpy()).items()}}
    return {"order": order, "labels": labels, "baseline": baseline, "panels": panels, "agreement": agreement,
            "confidence": confidence, "reference_name": reference_name}


def plot_figure9(data: Mapping):
    panels = data["panels"]
    order, labels = data["order"], data["labels"]
    pos = {m: i for i, m in enumerate(order)}
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, *axes = _figure(nrows, ncols, (7.5 * ncols, 5.2 * nrows))
    base_label = labels[data["baseline"]]
    for k, (ax, (title, series)) in enumerate(zip(axes, panels)):
        n = len(series)
        offsets = np.linspace(-0.12, 0.12, n) if n > 1 else [0.0]
        for j, s in enumerate(series):
            v = s["values"]
            ms = [m for m in order if m in v.index]
            x = np.array([pos[m] for m in ms], dtype=float) + offsets[j]
            y = v.loc[ms, "rel"].to_numpy(dtype=float)
            if s["kind"] == "reference":
                ax.plot(x, y, color="black", marker="s", linewidth=1.5, label=s["label"])
                continue
            yerr = np.nan_to_num(np.vstack([np.clip(y - v.loc[ms, "rel_low"].to_numpy(dtype=float), 0, None),
                                            np.clip(v.loc[ms, "rel_high"].to_numpy(dtype=float) - y, 0, None)]))
            agr = data["agreement"].get(s["label"], {})
            rho = agr.get("spearman_rho", math.nan)
            txt = (f": ρ = {rho:.2f}, τ = {agr['kendall_tau']:.2f} vs {_ds_label(data['reference_name'])}"
                   if np.isfinite(rho) else "")
            ax.errorbar(x, y, yerr=yerr, color=PALETTE[(j + k) % len(PALETTE)], marker="o" if s["kind"] == "clean"
                        else "^", linestyle="--" if s["kind"] == "clean" else ":", capsize=3,
                        label=s["label"] + txt)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([labels[m] for m in order], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_ylabel(f"Top-1 relative to {base_label}")
        ax.set_title(f"({chr(ord('a') + k)}) {title}")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    conf = f"{100 * data['confidence']:g}%"
    fig.suptitle(f"Figure 9: Final model ranking and relative improvement; models in "
                 f"{_ds_label(data['reference_name'])} order; error bars: {conf} interval across seeds "
                 f"(Clopper-Pearson for one seed on clean test sets)", fontsize=10)
    return fig


# =========================================================================== figure 8


def figure8_data(transfer: pd.DataFrame, models: Mapping[str, Mapping], confidence: float = 0.95,
                 n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Per pretraining dataset: seed means of (pretraining accuracy, transfer accuracy) and the fit."""
    y = seed_summary(transfer, "top1", confidence, n_test="n_test")
    x = seed_summary(transfer, "pretrain_top1", confidence)
    tab = y.merge(x[["dataset", "model", "pretrain_top1", "pretrain_top1_low", "pretrain_top1_high"]],
                  on=["dataset", "model"])
    unknown = sorted(set(tab["model"]) - set(models))
    if unknown:
        log.warning("fig8: models not in --models are shown by their name: %s", ", ".join(unknown))
    series = {}
    for k, (ds, g) in enumerate(tab.groupby("dataset", sort=True)):
        g = g.sort_values("pretrain_top1", kind="mergesort").reset_index(drop=True)
        xv, yv = g["pretrain_top1"].to_numpy(), g["top1"].to_numpy()
        if len(g) < stats.MIN_MODELS:
            log.warning("fig8: pretraining dataset %s has %d model(s) (need >= %d); no fit", ds, len(g),
                        stats.MIN_MODELS)
        lo, hi = (float(xv.min()), float(xv.max())) if len(xv) else (0.0, 1.0)
        pad = 0.05 * (hi - lo or 1.0)
        grid = np.linspace(lo - pad, hi + pad, 50)
        fit = stats.fit_band(xv, yv, grid, n_bootstrap, confidence, seed=seed + k) if len(g) else \
            stats.fit_band([], [], grid, 0, confidence)
        series[ds] = {"table": g, "fit": fit}
    return {"series": series, "target": str(transfer["target"].iloc[0]), "confidence": confidence,
            "labels": {m: str(models.get(m, {}).get("display_name") or m) for m in tab["model"]}}


def plot_figure8(data: Mapping, mode: str):
    fig, ax = _figure(1, 1, (7.5, 5.5))
    conf = f"{100 * data['confidence']:g}%"
    for k, (ds, s) in enumerate(data["series"].items()):
        col = PALETTE[k % len(PALETTE)]
        g, fit = s["table"], s["fit"]
        x, y = g["pretrain_top1"].to_numpy(), g["top1"].to_numpy()
        xerr = np.nan_to_num(np.vstack([np.clip(x - g["pretrain_top1_low"], 0, None),
                                        np.clip(g["pretrain_top1_high"] - x, 0, None)]))
        yerr = np.nan_to_num(np.vstack([np.clip(y - g["top1_low"], 0, None), np.clip(g["top1_high"] - y, 0, None)]))
        if np.isfinite(fit["slope"]):
            txt = (f"slope = {fit['slope']:.2f} [{fit['slope_low']:.2f}, {fit['slope_high']:.2f}], "
                   f"Pearson R = {fit['pearson_r']:.2f}")
            ax.plot(fit["grid"], fit["slope"] * fit["grid"] + fit["intercept"], color=col, linewidth=1.3)
            ax.fill_between(fit["grid"], fit["band_low"], fit["band_high"], color=col, alpha=0.18, linewidth=0)
        else:
            txt = f"no fit (n = {fit['n']})"
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, color=col, marker="o", linestyle="none", capsize=3,
                    label=f"pretrained on {_ds_label(ds)}: {txt}")
        _label_points(ax, [data["labels"][m] for m in g["model"]], x, y, col)
    what = "fine-tuned (all layers)" if mode == "finetune" else "linear transfer (last layer)"
    letter = "a" if mode == "finetune" else "b"
    ax.set_xlabel("Pretraining test accuracy (top-1)")
    ax.set_ylabel(f"{_ds_label(data['target'])} test accuracy, {what}")
    ax.set_title(f"Figure 8{letter}: {_ds_label(data['target'])} {what} vs pretraining accuracy", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))
    fig.text(0.5, 0.005, f"Lines: least squares over models; bands: {conf} bootstrap band (models resampled); "
             f"error bars: {conf} interval across seeds", ha="center", va="bottom", fontsize=7.5, color="dimgray")
    return fig


# =========================================================================== CLI


def cmd_fig9(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    models = parse_models(args.models)
    runs = read_accuracies(args.accuracies)
    reference = read_reference(args.reference)
    robustness = read_robustness(args.robustness) if args.robustness else None
    data = figure9_data(runs, reference, robustness, models, params["baseline_model"], args.panel_datasets,
                        params["confidence"], args.reference_name)
    save_figure(plot_figure9(data), args.out_png, args.out_pdf)
    for label, agr in data["agreement"].items():
        log.info("%s: spearman=%.3f kendall=%.3f slope=%.3f R=%.3f", label, agr["spearman_rho"], agr["kendall_tau"],
                 agr["fit_slope"], agr["fit_pearson_r"])
    log.info("wrote %s and %s", args.out_png, args.out_pdf)
    return 0


def cmd_fig8(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    models = parse_models(args.models)
    transfer = read_transfer(args.transfer, args.mode)
    data = figure8_data(transfer, models, params["confidence"], params["n_bootstrap"], params["seed"])
    save_figure(plot_figure8(data, args.mode), args.out_png, args.out_pdf)
    for ds, s in data["series"].items():
        f = s["fit"]
        log.info("pretrained on %s: n=%d slope=%.3f [%.3f, %.3f] R=%.3f", ds, f["n"], f["slope"], f["slope_low"],
                 f["slope_high"], f["pearson_r"])
    log.info("wrote %s and %s", args.out_png, args.out_pdf)
    return 0


def add_aggregate_commands(sub) -> None:
    f9 = sub.add_parser("fig9", help="Figure 9: ranking and relative improvement, robustness and CIFAR-10 panels")
    f9.add_argument("--accuracies", required=True, help="accuracies.csv")
    f9.add_argument("--reference", required=True, help="reference_accuracies.csv")
    f9.add_argument("--robustness", nargs="*", default=[], metavar="JSON", help="robustness.json of every run")
    f9.add_argument("--panel-datasets", nargs="*", default=[], metavar="DATASET",
                    help="datasets drawn in a panel of their own (e.g. cifar10 trained from scratch)")
    f9.add_argument("--models", required=True, help="models config section as JSON (display names)")
    f9.add_argument("--params", default="{}", help="analysis config section as JSON")
    f9.add_argument("--reference-name", default="imagenet")
    f9.add_argument("--out-png", required=True)
    f9.add_argument("--out-pdf", required=True)
    f9.set_defaults(func=cmd_fig9)

    f8 = sub.add_parser("fig8", help="Figure 8a/8b: CIFAR-10 transfer accuracy vs pretraining accuracy")
    f8.add_argument("--transfer", nargs="+", required=True, metavar="JSON",
                    help="finetune.json or linear.json of every (pretraining dataset, model, seed)")
    f8.add_argument("--mode", required=True, choices=TRANSFER_MODES)
    f8.add_argument("--models", required=True, help="models config section as JSON (display names)")
    f8.add_argument("--params", default="{}", help="analysis config section as JSON")
    f8.add_argument("--out-png", required=True)
    f8.add_argument("--out-pdf", required=True)
    f8.set_defaults(func=cmd_fig8)
