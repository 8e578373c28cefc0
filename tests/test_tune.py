"""Tuning under a locked budget: sampling, protocol lock, successive-halving slots, best.json,
and a real 2-trial x 2-rung run on a tiny dataset (mobilenet_v3_small at 32 px, 1 CPU thread)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from imagenot import config as icfg
from imagenot import train as T
from imagenot import tune
from imagenot.io import InputError, read_json, write_json
from test_data import make_dataset_dir

ROOT = Path(__file__).resolve().parents[1]

SPACE = {
    "lr": {"distribution": "loguniform", "low": 0.1, "high": 10.0, "relative": True},
    "weight_decay": {"distribution": "loguniform", "low": 1e-6, "high": 5e-3, "relative": False},
    "momentum": {"distribution": "uniform", "low": 0.8, "high": 0.99, "relative": False},
    "label_smoothing": {"distribution": "choice", "values": [0.0, 0.1], "relative": False},
}
TUNING = {"enabled": True, "n_trials": 24, "seed": 0, "include_reference": True, "trial_seed": 0, "eta": 3,
          "min_epochs": 10, "max_epochs": 90, "keep_checkpoints": False, "space": SPACE}


def paper_spec(tuning=None) -> dict:
    """The spec the workflow builds from config/paper.yaml (its nine recipes)."""
    cfg = icfg.load(ROOT / "config/paper.yaml")
    return {"tuning": copy.deepcopy(tuning or TUNING),
            "models": {m: icfg.merged_recipe(cfg, m) for m in cfg["models"]},
            "datasets": list(cfg["datasets"]), "seeds": cfg["training"]["seeds"]}


# --------------------------------------------------------------------------- budget and sampling


def test_rung_plan():
    plan = tune.rung_plan(TUNING)
    assert [(r["rung"], r["epochs"], r["slots"]) for r in plan] == [(0, 10, 24), (1, 30, 8), (2, 90, 3)]
    small = dict(TUNING, n_trials=2, eta=2, min_epochs=1, max_epochs=2)
    assert [(r["epochs"], r["slots"]) for r in tune.rung_plan(small)] == [(1, 2), (2, 1)]
    # one trial left before max_epochs: that rung is the last and gets the full horizon
    assert [(r["epochs"], r["slots"]) for r in tune.rung_plan(dict(TUNING, n_trials=9, min_epochs=1, max_epochs=100))] \
        == [(1, 9), (3, 3), (100, 1)]
    # max/min not a power of eta: the last rung is capped at max_epochs
    assert [r["epochs"] for r in tune.rung_plan(dict(TUNING, min_epochs=1, max_epochs=10))] == [1, 3, 9, 10]
    with pytest.raises(InputError, match="min_epochs"):
        tune.rung_plan(dict(TUNING, min_epochs=20, max_epochs=10))


def test_sampling_is_deterministic_within_bounds_and_identical_for_all_models():
    a = tune.build_protocol(paper_spec())
    b = tune.build_protocol(paper_spec())
    assert a["trials"] == b["trials"] and len(a["trials"]) == 24
    assert a["trials"][0]["params"] == {"label_smoothing": None, "lr": 1.0, "momentum": None, "weight_decay": None}
    sampled = a["trials"][1:]
    lrs = np.array([t["params"]["lr"] for t in sampled])
    assert ((0.1 <= lrs) & (lrs <= 10)).all() and len(set(lrs)) == 23
    assert (lrs < 1).any() and (lrs > 1).any()
    assert all(1e-6 <= t["params"]["weight_decay"] <= 5e-3 for t in sampled)
    assert all(0.8 <= t["params"]["momentum"] <= 0.99 for t in sampled)
    assert {t["params"]["label_smoothing"] for t in sampled} == {0.0, 0.1}
    # another seed, other trials
    c = tune.build_protocol(paper_spec(dict(TUNING, seed=1)))
    assert c["trials"][1:] != a["trials"][1:]
    # the same trial list for every model: only the relative factor's base differs
    for trial in (0, 5):
        over = {m: tune.trial_recipe(a, m, trial)[1] for m in a["models"]}
        factor = a["trials"][trial]["params"]["lr"]
        for m, o in over.items():
            assert o["lr"] == pytest.approx(factor * a["models"][m]["lr"])
            assert o["weight_decay"] == (a["models"][m]["weight_decay"] if trial == 0
                                         else a["trials"][trial]["params"]["weight_decay"])
        recipe, _ = tune.trial_recipe(a, "vit_b_16", trial)
        assert recipe["epochs"] == 90 and recipe["optimizer"] == "adamw"
    # the sampling does not depend on which models are tuned
    spec = paper_spec()
    spec["models"] = {"alexnet": spec["models"]["alexnet"]}
    assert tune.build_protocol(spec)["trials"] == a["trials"]


def test_integer_fields_are_rounded():
    recipe = {"batch_size": 32, "lr": 0.1}
    space = {"batch_size": {"distribution": "loguniform", "low": 0.5, "high": 2, "relative": True}}
    assert tune.resolve({"batch_size": 1.3}, recipe, space) == {"batch_size": 42}


# --------------------------------------------------------------------------- protocol lock


def test_protocol_lock_refuses_a_change_and_records_a_reason(tmp_path, imagenot_cli, capsys):
    out = tmp_path / "tune" / "protocol.json"
    history_path = out.parent / "protocol_history.json"
    spec = paper_spec()
    first = tune.lock_protocol(spec, out)
    assert read_json(out) == first
    assert first["tuning"]["n_trials"] == 24 and first["training"]["seeds"] == [0, 1, 2]
    assert set(first["models"]) == set(spec["models"]) and first["datasets"] == ["imagenot", "cifar10"]
    assert "enabled" not in first["tuning"] and "protocol_change_reason" not in first["tuning"]
    # the same config again: accepted, nothing new in the history
    tune.lock_protocol(paper_spec(), out)
    assert len(read_json(history_path)) == 1

    wider = paper_spec()
    wider["tuning"]["space"]["lr"]["high"] = 30.0
    with pytest.raises(InputError, match=r"tuning\.space\.lr\.high: 10\.0 -> 30\.0") as e:
        tune.lock_protocol(wider, out)
    assert "protocol_change_reason" in str(e.value)
    more = paper_spec(dict(TUNING, n_trials=48))
    with pytest.raises(InputError, match=r"tuning\.n_trials: 24 -> 48"):
        tune.lock_protocol(more, out)
    recipe = paper_spec()
    recipe["models"]["resnet152"]["lr"] = 0.2
    with pytest.raises(InputError, match=r"models\.resnet152\.lr"):
        tune.lock_protocol(recipe, out)
    assert read_json(out) == first

    # the CLI: non-zero exit, the changed key named
    rc = imagenot_cli(["tune", "protocol", "--spec", json.dumps(wider), "--out", str(out)])
    assert rc == 2 and "tuning.space.lr.high" in capsys.readouterr().err
    # Snakemake removes a rule's output before rerunning it: the history still holds the lock
    out.unlink()
    with pytest.raises(InputError, match=r"tuning\.space\.lr\.high"):
        tune.lock_protocol(wider, out)

    # with a reason: accepted, the old protocol and the reason appended to the history
    wider["tuning"]["protocol_change_reason"] = "vgg19 does not train at any sampled lr"
    rc = imagenot_cli(["tune", "protocol", "--spec", json.dumps(wider), "--out", str(out)])
    assert rc == 0
    history = read_json(history_path)
    assert [h["reason"] for h in history] == [None, "vgg19 does not train at any sampled lr"]
    assert history[1]["previous"] == first and history[1]["changed"] == ["trials", "tuning.space.lr.high"]
    new = read_json(out)
    assert new["tuning"]["space"]["lr"]["high"] == 30.0 and history[1]["protocol"] == new
    # a reason already used does not cover a further change
    wider["tuning"]["n_trials"] = 30
    with pytest.raises(InputError, match="already recorded"):
        tune.lock_protocol(wider, out, wider["tuning"]["protocol_change_reason"])
    # the accepted protocol with the stale reason still in the config is not a change
    wider["tuning"]["n_trials"] = 24
    tune.lock_protocol(wider, out, wider["tuning"]["protocol_change_reason"])
    assert len(read_json(history_path)) == 2


def test_bad_space_is_rejected_naming_the_key():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["tuning"] = {"enabled": True, "space": {"lr": {"distribution": "loguniform", "low": 0.0, "high": 1.0}}}
    with pytest.raises(InputError, match=r"tuning\.space\.lr\.low"):
        icfg.validate(copy.deepcopy(cfg))
    cfg["tuning"]["space"] = {"learning_rate": {"distribution": "uniform", "low": 0.1, "high": 1.0}}
    with pytest.raises(InputError, match=r"tuning\.space"):
        icfg.validate(copy.deepcopy(cfg))
    cfg["tuning"]["space"] = {"lr": {"distribution": "choice"}}
    with pytest.raises(InputError, match=r"tuning\.space\.lr.*values"):
        icfg.validate(copy.deepcopy(cfg))
    with pytest.raises(InputError, match="epochs"):
        tune.check_space({"epochs": {"distribution": "choice", "values": [1, 2]}})


# --------------------------------------------------------------------------- rungs and best


def rung_results(tmp_path, rung, accs, trials=None) -> list[Path]:
    """trial.json files of one rung: slot i trained trials[i] (default i) to validation accuracy accs[i]."""
    paths = []
    trials = trials or list(range(len(accs)))
    for slot, acc in enumerate(accs):
        d = tmp_path / f"rung{rung}" / f"slot{slot}"
        d.mkdir(parents=True)
        (d / "checkpoint.pt").write_bytes(b"weights")
        write_json({"dataset": "ds", "model": "m", "rung": rung, "slot": slot, "trial": trials[slot], "val_acc": acc,
                    "best_epoch": 1, "epochs_run": 1, "diverged": acc is None, "dir": str(d),
                    "overrides": {"lr": 0.01 * (slot + 1)}}, d / "trial.json")
        paths.append(d / "trial.json")
    return paths


def test_rung_slots_pick_the_kth_best_trial(tmp_path):
    protocol = tune.lock_protocol(paper_spec(dict(TUNING, n_trials=6, eta=2, min_epochs=1, max_epochs=4)),
                                  tmp_path / "protocol.json")
    assert [(r["epochs"], r["slots"]) for r in protocol["rungs"]] == [(1, 6), (2, 3), (4, 2)]
    # rung 0: slot k trains trial k
    assert [tune.pick_trial(protocol, 0, k, None)["trial"] for k in range(6)] == list(range(6))
    # slot 2 (trial 2) diverged; slots 1 and 3 tie (the lower trial first)
    accs = [0.30, 0.55, None, 0.55, 0.70, 0.10]
    summary = tune.summarize_rung(tmp_path / "protocol.json", 0, rung_results(tmp_path, 0, accs),
                                  tmp_path / "rung0.json", keep_checkpoints=False)
    assert [e["trial"] for e in summary["ranking"]] == [4, 1, 3, 0, 5, 2]
    assert summary["promoted"] == [4, 1, 3] and summary["epochs"] == 1
    picks = [tune.pick_trial(protocol, 1, k, read_json(tmp_path / "rung0.json")) for k in range(3)]
    assert [p["trial"] for p in picks] == [4, 1, 3]
    assert picks[0]["from"]["slot"] == 4
    # the dropped trials' checkpoints are gone, the promoted ones kept
    kept = sorted(p.parent.name for p in (tmp_path / "rung0").rglob("checkpoint.pt"))
    assert kept == ["slot1", "slot3", "slot4"]
    with pytest.raises(InputError, match="slot 3 out of range"):
        tune.pick_trial(protocol, 1, 3, summary)
    with pytest.raises(InputError, match="rung 0 is required"):
        tune.pick_trial(protocol, 1, 0, None)
    with pytest.raises(InputError, match="trial 7 is not in the protocol"):
        tune.summarize_rung(tmp_path / "protocol.json", 1, rung_results(tmp_path / "y", 1, [0.1, 0.2, 0.3], [0, 1, 7]),
                            tmp_path / "bad.json")
    with pytest.raises(InputError, match="5 trial results given"):
        tune.summarize_rung(tmp_path / "protocol.json", 0, rung_results(tmp_path / "x", 0, accs[:5]), tmp_path / "bad.json")


def test_best_is_the_top_trial_of_the_last_rung(tmp_path):
    tune.lock_protocol(paper_spec(dict(TUNING, n_trials=4, eta=2, min_epochs=1, max_epochs=2)), tmp_path / "protocol.json")
    tune.summarize_rung(tmp_path / "protocol.json", 1, rung_results(tmp_path, 1, [0.4, 0.62], [2, 3]),
                        tmp_path / "rung1.json")
    best = tune.select_best(tmp_path / "protocol.json", tmp_path / "rung1.json", tmp_path / "best.json")
    assert best["trial"] == 3 and best["params"] == read_json(tmp_path / "protocol.json")["trials"][3]["params"] and best["val_acc"] == 0.62 and best["overrides"] == {"lr": 0.02}
    assert read_json(tmp_path / "best.json") == best and tune.load_overrides(tmp_path / "best.json") == {"lr": 0.02}
    # best.json is chosen on the last rung only
    tune.summarize_rung(tmp_path / "protocol.json", 0, rung_results(tmp_path, 0, [0.9, 0.1, 0.2, 0.3]), tmp_path / "rung0.json")
    with pytest.raises(InputError, match="last rung"):
        tune.select_best(tmp_path / "protocol.json", tmp_path / "rung0.json", tmp_path / "b.json")
    tune.summarize_rung(tmp_path / "protocol.json", 1, rung_results(tmp_path / "dv", 1, [None, None]), tmp_path / "dv.json")
    with pytest.raises(InputError, match="all diverged"):
        tune.select_best(tmp_path / "protocol.json", tmp_path / "dv.json", tmp_path / "b.json")


# --------------------------------------------------------------------------- a real run

PARAMS = {"device": "cpu", "num_workers": 0, "threads": 1, "patience": 10, "amp": True}
TINY_RECIPE = {**icfg.RECIPE_FALLBACKS, "arch": "mobilenet_v3_small", "image_size": 32, "epochs": 50,
               "batch_size": 8, "optimizer": "sgd", "lr": 0.05, "lr_scheduler": "cosine"}


def test_two_trials_two_rungs_end_to_end(tmp_path, imagenot_cli):
    data = make_dataset_dir(tmp_path / "ds", n_classes=3, per_class={"train": 8, "val": 4, "test": 2}, size=32)
    tuning = dict(TUNING, n_trials=2, eta=2, min_epochs=1, max_epochs=2, seed=3, include_reference=False,
                  space={"lr": {"distribution": "loguniform", "low": 0.2, "high": 5.0, "relative": True}})
    spec = {"tuning": tuning, "models": {"mnv3": dict(TINY_RECIPE, display_name="MNv3")}, "datasets": ["ds"],
            "seeds": [0]}
    root = tmp_path / "tune"
    protocol = tune.lock_protocol(spec, root / "protocol.json")
    assert [(r["epochs"], r["slots"]) for r in protocol["rungs"]] == [(1, 2), (2, 1)]

    run = root / "ds" / "mnv3"
    trials = [tune.run_trial(root / "protocol.json", "mnv3", "ds", 0, k, data, PARAMS, run / "rung0" / f"slot{k}")
              for k in range(2)]
    assert [t["trial"] for t in trials] == [0, 1]
    assert all(t["epochs_run"] == 1 and t["epochs_budget"] == 1 and t["horizon"] == 2 for t in trials)
    assert trials[0]["overrides"]["lr"] != trials[1]["overrides"]["lr"]
    summary = tune.summarize_rung(root / "protocol.json", 0, [run / "rung0" / f"slot{k}" / "trial.json" for k in range(2)],
                                  run / "rung0.json")
    winner = summary["ranking"][0]
    assert winner["val_acc"] == max(t["val_acc"] for t in trials)
    # a rerun of a rung-0 job finds its checkpoint at the budget and does not train further
    again = tune.run_trial(root / "protocol.json", "mnv3", "ds", 0, 0, data, PARAMS, run / "rung0" / "slot0")
    assert again["epochs_run"] == 1 and again["val_acc"] == trials[0]["val_acc"]

    # rung 1 through the CLI, as the workflow calls it: the winner resumes from its rung-0 checkpoint
    rc = imagenot_cli(["tune", "trial", "--protocol", str(root / "protocol.json"), "--previous", str(run / "rung0.json"),
                       "--model", "mnv3", "--dataset", "ds", "--rung", "1", "--slot", "0", "--data-dir", str(data),
                       "--params", json.dumps(PARAMS), "--out-dir", str(run / "rung1" / "slot0")])
    assert rc == 0
    final = read_json(run / "rung1" / "slot0" / "trial.json")
    assert final["trial"] == winner["trial"] and final["epochs_run"] == 2
    assert final["resumed_from"] == {"rung": 0, "slot": winner["slot"]}
    assert read_json(run / "rung1" / "slot0" / "train.json")["resumed_from_epoch"] == 1
    # promoted through the rungs = one uninterrupted 2-epoch run of that trial
    recipe, _ = tune.trial_recipe(protocol, "mnv3", final["trial"])
    straight = T.train("mnv3", recipe, data, 0, PARAMS, tmp_path / "straight")
    assert final["val_acc"] == straight["best_val_acc"] and final["best_epoch"] == straight["best_epoch"]

    tune.summarize_rung(root / "protocol.json", 1, [run / "rung1" / "slot0" / "trial.json"], run / "rung1.json")
    assert imagenot_cli(["tune", "best", "--protocol", str(root / "protocol.json"), "--summary", str(run / "rung1.json"),
                         "--out", str(run / "best.json")]) == 0
    best = read_json(run / "best.json")
    assert best["trial"] == final["trial"] and best["overrides"]["lr"] == pytest.approx(
        protocol["trials"][final["trial"]]["params"]["lr"] * 0.05)

    # the final training takes best.json's hyperparameters over the recipe
    out = tmp_path / "final"
    assert imagenot_cli(["train", "--model", "mnv3", "--recipe", json.dumps(dict(TINY_RECIPE, epochs=1)),
                         "--data-dir", str(data), "--seed", "0", "--params", json.dumps(PARAMS),
                         "--out-dir", str(out), "--overrides", str(run / "best.json")]) == 0
    import torch

    assert torch.load(out / "model.pt", weights_only=True)["recipe"]["lr"] == best["overrides"]["lr"]


# --------------------------------------------------------------------------- the workflow


def snakemake(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def tiny_tuning_config(tmp_path, **tuning) -> Path:
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["tuning"] = {"enabled": True, "n_trials": 3, "eta": 2, "min_epochs": 1, "max_epochs": 2, **tuning}
    path = tmp_path / "tiny_tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_workflow_plans_tuning_before_training(tmp_path):
    config = tiny_tuning_config(tmp_path)
    r = snakemake("-n", "--configfile", str(config), "--directory", str(tmp_path), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    from test_workflow import job_counts

    counts = job_counts(out)
    # 2 datasets (imagenot, digits) x 3 models x (3 + 2) slots: rungs of 1 and 2 epochs
    plan = tune.rung_plan({"n_trials": 3, "eta": 2, "min_epochs": 1, "max_epochs": 2})
    assert [(p["epochs"], p["slots"]) for p in plan] == [(1, 3), (2, 2)]
    assert counts["tune_protocol"] == 1 and counts["tune_trial"] == 2 * 3 * 5
    assert counts["tune_rung"] == 2 * 3 * 2 and counts["tune_best"] == 2 * 3 and counts["train"] == 2 * 3
    train_inputs = re.findall(r"rule train:\n\s+input: ([^\n]+)", out)
    assert len(train_inputs) == 6
    for line in train_inputs:  # each training job reads the best trial of its own (dataset, model)
        m = re.search(r"results/datasets/([a-z]+).*results/tune/([a-z]+)/[a-z0-9_]+/best\.json", line)
        assert m and m.group(1) == m.group(2), line


@pytest.mark.slow
def test_workflow_tunes_for_real_and_locks_the_protocol(tmp_path):
    """`snakemake tune` on an existing tiny WebDataset: protocol, 2 + 1 trial jobs, rankings,
    best.json; then a changed budget stops the workflow at the protocol until a reason is given."""
    data = make_dataset_dir(tmp_path / "ds", n_classes=3, per_class={"train": 8, "val": 4, "test": 2}, size=32)

    def write_config(name, **tuning):
        cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
        cfg["datasets"] = {"wds": {"source": "webdataset", "path": str(data)}}
        cfg["models"] = {"mnv3": {"arch": "mobilenet_v3_small", "reference_weights": "MobileNet_V3_Small_Weights.IMAGENET1K_V1"}}
        cfg["analysis"]["baseline_model"] = "mnv3"
        cfg["training"]["recipe_defaults"]["batch_size"] = 8
        cfg["tuning"] = {"enabled": True, "n_trials": 2, "eta": 2, "min_epochs": 1, "max_epochs": 2, **tuning}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    r = snakemake("--cores", "2", "--configfile", str(write_config("a.yaml")), "--directory", str(tmp_path / "w"),
                  "tune", cwd=ROOT)
    w = tmp_path / "w"
    if r.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted((w / "logs").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{r.stderr[-3000:]}\n{logs}")
    run = w / "results/tune/wds/mnv3"
    final = read_json(run / "rung1/slot0/trial.json")
    rung0 = read_json(run / "rung0.json")
    assert final["trial"] == rung0["promoted"][0] and final["resumed_from"]["rung"] == 0
    assert read_json(run / "best.json")["trial"] == final["trial"]
    first = read_json(w / "results/tune/protocol.json")
    trial_mtime = (run / "rung0/slot0/trial.json").stat().st_mtime

    # a changed budget: Snakemake reruns the protocol job, which refuses; no trial runs
    r = snakemake("--cores", "1", "--configfile", str(write_config("b.yaml", n_trials=3)), "--directory", str(w),
                  "tune", cwd=ROOT)
    assert r.returncode != 0
    assert "tuning.n_trials: 2 -> 3" in (w / "logs/tune/protocol.log").read_text()
    assert read_json(w / "results/tune/protocol_history.json")[-1]["protocol"] == first
    assert (run / "rung0/slot0/trial.json").stat().st_mtime == trial_mtime
    # with a reason the new protocol is written and the change recorded
    reason = write_config("c.yaml", n_trials=3, protocol_change_reason="one more trial for all models")
    r = snakemake("--cores", "1", "--configfile", str(reason), "--directory", str(w), "results/tune/protocol.json",
                  cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    history = read_json(w / "results/tune/protocol_history.json")
    assert [h["reason"] for h in history] == [None, "one more trial for all models"]
    assert history[1]["previous"] == first
    assert read_json(w / "results/tune/protocol.json")["tuning"]["n_trials"] == 3
