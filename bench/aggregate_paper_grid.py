"""Time the whole aggregation on the paper's grid with generated per-example predictions.

9 models x 3 datasets x 3 seeds, 100,000 test examples per run, 10,000 bootstrap
resamples: read and check the 81 predictions.parquet (+ metrics.json), the accuracy table,
rank agreement with test-example bootstrap and across-seed intervals, the pairwise McNemar
table and rank stability (500 random subsets x 16 sizes per dataset), each table written
as CSV/MD/TeX. Target: under 60 s on the 2-core development machine.

Baselines, in the same process:
- loading the predictions alone (a floor: reading 81 x 100,000 rows);
- a naive bootstrap, one replicate at a time (fancy-index the examples, mean, then
  ``scipy.stats.spearmanr`` and ``kendalltau``), timed on 200 replicates of one comparison
  and scaled to the 10,000 replicates x 6 comparisons the table computes.

Usage: python bench/aggregate_paper_grid.py [--n-test 100000] [--n-bootstrap 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from imagenot import aggregate as A  # noqa: E402
from imagenot import stats as S  # noqa: E402
from imagenot.tables import write_table  # noqa: E402

MODELS = {  # the paper's nine architectures with their ImageNet-1k top-1
    "alexnet": 0.5652, "vgg19_bn": 0.7422, "resnet152": 0.8228, "densenet161": 0.7714, "inception_v3": 0.7729,
    "mobilenet_v3_large": 0.7527, "efficientnet_v2_l": 0.8581, "vit_l_16": 0.7966, "convnext_large": 0.8441,
}
DATASETS = {"imagenot": (0.40, 0.60), "cifar10": (0.89, 0.95), "imagenot_noisy": (0.30, 0.50)}
SEEDS = (0, 1, 2)


def generate(root: Path, n_test: int, seed: int = 0) -> None:
    """Correlated predictions: per-example difficulty, per-model skill, per-seed noise."""
    rng = np.random.default_rng(seed)
    ref = np.array(list(MODELS.values()))
    for ds, (lo, hi) in DATASETS.items():
        difficulty = rng.logistic(0, 1.0, n_test)
        labels = rng.integers(0, 1000, n_test)
        keys = pd.Series([f"{i:07d}" for i in range(n_test)], dtype="string")
        target = lo + (ref - ref.min()) / (ref.max() - ref.min()) * (hi - lo)
        for j, model in enumerate(MODELS):
            # shift so that the mean accuracy is about the target
            skill = np.log(target[j] / (1 - target[j])) * 1.6
            for s in SEEDS:
                p = 1 / (1 + np.exp(-(skill - 1.6 * difficulty + rng.normal(0, 0.3, n_test))))
                correct = rng.random(n_test) < p
                d = root / "eval" / ds / model / f"seed{s}"
                d.mkdir(parents=True, exist_ok=True)
                pd.DataFrame({"key": keys,
                              "label": labels, "pred": np.where(correct, labels, (labels + 1) % 1000),
                              "correct": correct}).to_parquet(d / "predictions.parquet", index=False)
                k = int(correct.sum())
                low, high = S.clopper_pearson(k, n_test)
                (d / "metrics.json").write_text(json.dumps({
                    "model": model, "dataset": ds, "seed": s, "top1": k / n_test, "top1_low": low,
                    "top1_high": high, "top5": None, "n_test": n_test}))
    pd.DataFrame([{"model": m, "display_name": m, "reference": "torchvision", "top1": t} for m, t in MODELS.items()]
                 ).to_csv(root / "reference.csv", index=False)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def aggregate(root: Path, n_bootstrap: int, timings: dict) -> None:
    t = _clock()
    metrics = sorted(root.glob("eval/*/*/*/metrics.json"))
    preds = sorted(root.glob("eval/*/*/*/predictions.parquet"))
    runs = A.collect_accuracies(metrics)
    write_table(runs, root / "tables/accuracies.csv")
    reference = A.read_reference(root / "reference.csv")
    predictions = A.read_predictions(preds)
    correct = A.correctness_matrices(runs, predictions)
    timings["read + accuracies"] = _since(t)

    t = _clock()
    ra = A.rank_agreement_table(runs, reference, "alexnet", correct=correct, n_bootstrap=n_bootstrap)
    write_table(ra, root / "tables/rank_agreement.csv")
    timings[f"rank agreement ({n_bootstrap} bootstrap)"] = _since(t)

    t = _clock()
    pw = A.pairwise_table(runs, reference, predictions)
    write_table(pw, root / "tables/pairwise.csv")
    timings["pairwise McNemar"] = _since(t)

    t = _clock()
    rs = A.rank_stability_table(correct, n_replicates=500, n_points=16)
    write_table(rs, root / "tables/rank_stability.csv")
    timings["rank stability (500 x 16)"] = _since(t)
    assert np.all(rs.groupby("dataset")["p_recovered"].last() == 1.0)
    print(ra[["reference", "dataset", "spearman_rho", "spearman_low", "spearman_high", "seed_spearman_low",
              "seed_spearman_high"]].to_string(index=False))


def naive_bootstrap_seconds(root: Path, n_bootstrap: int, n_comparisons: int, reps: int = 200) -> float:
    """Per-replicate loop with scipy for one comparison, scaled to the full job."""
    from scipy import stats as st

    runs = A.collect_accuracies(sorted(root.glob("eval/imagenot/*/*/metrics.json")))
    correct = A.correctness_matrices(runs, A.read_predictions(sorted(root.glob("eval/imagenot/*/*/predictions.parquet"))))
    c = np.stack([correct["imagenot"][m] for m in MODELS])
    ref = np.array(list(MODELS.values()))
    rng = np.random.default_rng(0)
    n = c.shape[1]
    t = time.perf_counter()
    for _ in range(reps):
        acc = c[:, rng.integers(0, n, n)].mean(axis=1)
        st.spearmanr(ref, acc)
        st.kendalltau(ref, acc)
    return (time.perf_counter() - t) / reps * n_bootstrap * n_comparisons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-test", type=int, default=100_000)
    ap.add_argument("--n-bootstrap", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagenot-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        generate(root, args.n_test)
        print(f"generated {len(MODELS)} models x {len(DATASETS)} datasets x {len(SEEDS)} seeds x {args.n_test} "
              f"test examples in {time.perf_counter() - t:.1f} s (not timed below)")

        t = time.perf_counter()
        A.read_predictions(sorted(root.glob("eval/*/*/*/predictions.parquet")))
        load = time.perf_counter() - t

        timings: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        t, cpu = time.perf_counter(), time.process_time()
        aggregate(root, args.n_bootstrap, timings)
        total, total_cpu = time.perf_counter() - t, time.process_time() - cpu
        load_after = os.getloadavg()[0]

        n_comp = len(DATASETS) + len(DATASETS) * (len(DATASETS) - 1) // 2
        naive = naive_bootstrap_seconds(root, args.n_bootstrap, n_comp)

    print()
    for k, (wall, cpu) in timings.items():
        print(f"  {k:<36s} {wall:7.1f} s wall {cpu:7.1f} s CPU")
    print(f"whole aggregation: {total:.1f} s wall, {total_cpu:.1f} s CPU of this process (target < 60 s); "
          f"machine load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores")
    print(f"baseline, loading the predictions alone: {load:.1f} s -> aggregation / load = {total / load:.1f}x")
    print(f"baseline, naive per-replicate scipy bootstrap of the rank-agreement intervals "
          f"({args.n_bootstrap} x {n_comp} comparisons, extrapolated from 200 replicates): {naive:.0f} s "
          f"-> naive / ours (rank agreement step) = "
          f"{naive / timings[f'rank agreement ({args.n_bootstrap} bootstrap)'][0]:.1f}x (wall)")


if __name__ == "__main__":
    main()
