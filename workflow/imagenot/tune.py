"""Hyperparameter tuning under a fixed, locked budget: ``imagenot tune ...``.

The paper (Appendix A) gives every architecture the same small search space and the same
number of trials, starts from the reference ImageNet recipe, and early-stops unpromising
trials with ASHA (Ray Tune). Here the search is successive halving laid out as static DAG
stages, so that every trial is an ordinary (resumable) training job:

* ``tune protocol`` writes ``protocol.json``: the space, budget, sampling seed, the rung plan,
  the sampled trial configurations (one list, identical for every model), the models' base
  recipes, the datasets and the final retraining seeds. It is written before any trial (the
  trials read their configuration from it). If a protocol was already recorded and the
  config now gives a different one, the command refuses, naming the changed keys, unless
  ``tuning.protocol_change_reason`` holds a new reason; then the change is appended to
  ``protocol_history.json`` and the new protocol is written.
* ``tune trial`` trains one slot of one rung: rung 0 slot k trains trial k; rung r > 0 slot k
  trains the k-th best trial of rung r - 1 (validation accuracy, ties to the lower trial
  number), resuming that trial's checkpoint from rung r - 1, up to the rung's epoch budget.
  Training is :func:`imagenot.train.train` unchanged: a trial's recipe spans the full horizon
  (``max_epochs``) and the job stops it after the rung's budget, as ASHA pauses a trial at a
  milestone, so a trial promoted through all rungs ends exactly as one uninterrupted run.
* ``tune rung`` ranks the slots of one rung (the input of the next rung's jobs).
* ``tune best`` writes ``best.json``: the best trial of the last rung and its hyperparameters
  as recipe overrides (``imagenot train --overrides best.json``).

Rung r has ``ceil(n_trials / eta**r)`` slots and trains to ``min_epochs * eta**r`` epochs (the
last rung to ``max_epochs``). Unlike ASHA this is synchronous: rung r starts when rung r - 1
has finished, which makes the promotions independent of job timing.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np

from .io import InputError, parse_json, read_json, write_json

log = logging.getLogger(__name__)

PROTOCOL_FORMAT = "imagenot-tune-protocol-v1"
HISTORY_NAME = "protocol_history.json"
# parts of the tuning section that are not the protocol
NOT_PROTOCOL = ("enabled", "protocol_change_reason", "keep_checkpoints")
# recipe fields that identify the model rather than how it is trained
RECIPE_LABELS = ("display_name", "reference_weights")
# integer recipe fields: sampled numbers are rounded for them
INTEGER_FIELDS = ("image_size", "epochs", "batch_size", "lr_step_size", "lr_warmup_epochs", "ra_reps", "ema_steps")


# --------------------------------------------------------------------------- budget and sampling


def rung_plan(tuning: dict) -> list[dict]:
    """[{rung, epochs, slots}] of successive halving: rung r keeps ceil(n / eta**r) trials and
    trains them to min_epochs * eta**r epochs; the last rung (the first whose budget reaches
    max_epochs) trains to max_epochs."""
    n, eta = int(tuning["n_trials"]), int(tuning["eta"])
    lo, hi = int(tuning["min_epochs"]), int(tuning["max_epochs"])
    if eta < 2:
        raise InputError(f"tuning.eta must be at least 2 (got {eta})")
    if lo > hi:
        raise InputError(f"tuning.min_epochs ({lo}) must not exceed tuning.max_epochs ({hi})")
    plan, r = [], 0
    while True:
        epochs = min(lo * eta**r, hi)
        plan.append({"rung": r, "epochs": epochs, "slots": math.ceil(n / eta**r)})
        if epochs >= hi or plan[-1]["slots"] == 1:
            break
        r += 1
    plan[-1]["epochs"] = hi  # the survivors always get the full horizon
    return plan


def sample_trials(tuning: dict) -> list[dict]:
    """The n_trials configurations: {trial, params}. One numpy Generator seeded with
    tuning.seed draws the hyperparameters in sorted-name order, trial by trial; with
    include_reference, trial 0 is the reference recipe itself (relative factors 1, absolute
    values null = the recipe's value). The list does not depend on the model."""
    space = tuning["space"]
    rng = np.random.default_rng(int(tuning["seed"]))
    trials = []
    for i in range(int(tuning["n_trials"])):
        if i == 0 and tuning.get("include_reference", True):
            params = {k: (1.0 if space[k].get("relative") else None) for k in sorted(space)}
        else:
            params = {k: _draw(rng, k, space[k]) for k in sorted(space)}
        trials.append({"trial": i, "params": params})
    return trials


def _draw(rng: np.random.Generator, name: str, spec: dict):
    kind = spec["distribution"]
    if kind == "choice":
        values = spec["values"]
        return copy.deepcopy(values[int(rng.integers(len(values)))])
    low, high = float(spec["low"]), float(spec["high"])
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        if low <= 0:
            raise InputError(f"tuning.space.{name}.low must be > 0 for loguniform (got {low:g})")
        return float(np.exp(rng.uniform(math.log(low), math.log(high))))
    raise InputError(f"tuning.space.{name}.distribution: unknown value {kind!r}")


def check_space(space: dict) -> None:
    for name, spec in space.items():
        kind = spec["distribution"]
        if kind in ("uniform", "loguniform"):
            if "low" not in spec or "high" not in spec:
                raise InputError(f"tuning.space.{name}: {kind} needs low and high")
            if not spec["low"] <= spec["high"]:
                raise InputError(f"tuning.space.{name}: low ({spec['low']}) > high ({spec['high']})")
            if kind == "loguniform" and spec["low"] <= 0:
                raise InputError(f"tuning.space.{name}.low must be > 0 for loguniform")
        elif kind == "choice":
            if not spec.get("values"):
                raise InputError(f"tuning.space.{name}: choice needs a non-empty values list")
            if spec.get("relative") and not all(isinstance(v, (int, float)) for v in spec["values"]):
                raise InputError(f"tuning.space.{name}: relative choice values must be numbers")
        if name == "epochs":
            raise InputError("tuning.space.epochs: the epoch budget is set by the rungs, not searched")


def resolve(params: dict, recipe: dict, space: dict) -> dict:
    """Recipe overrides for one trial on one model: relative factors multiply the model's
    recipe value, absolute values replace it, null keeps it; integer fields are rounded."""
    out = {}
    for name, value in params.items():
        spec = space.get(name, {})
        if value is None:
            value = recipe[name]
        elif spec.get("relative"):
            value = value * recipe[name]
        if name in INTEGER_FIELDS and value is not None:
            value = max(1, int(round(value)))
        out[name] = value
    return out


# --------------------------------------------------------------------------- the protocol


def build_protocol(spec: dict) -> dict:
    """The protocol of ``spec`` = {tuning, models: {name: merged recipe}, datasets, seeds}."""
    tuning = {k: v for k, v in spec["tuning"].items() if k not in NOT_PROTOCOL}
    check_space(tuning["space"])
    if not tuning["space"]:
        raise InputError("tuning.space: at least one hyperparameter is needed")
    models = {name: {k: v for k, v in r.items() if k not in RECIPE_LABELS} for name, r in spec["models"].items()}
    for name, recipe in models.items():
        for key, s in tuning["space"].items():
            if s.get("relative") and not isinstance(recipe.get(key), (int, float)):
                raise InputError(f"tuning.space.{key} is relative but models.{name}.{key} is {recipe.get(key)!r}, not a number")
    return {
        "format": PROTOCOL_FORMAT,
        "tuning": tuning,
        "models": models,
        "datasets": list(spec["datasets"]),
        "training": {"seeds": list(spec["seeds"])},
        "rungs": rung_plan(tuning),
        "trials": sample_trials(tuning),
    }


def sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def diff_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted paths where ``old`` and ``new`` differ (lists compared as a whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(path)
            else:
                out.extend(diff_keys(old[k], new[k], path))
        return out
    return [] if json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True) else [prefix or "<protocol>"]


def _describe(old: dict, new: dict, keys: list[str]) -> str:
    def get(d, path):
        for part in path.split("."):
            if not isinstance(d, dict) or part not in d:
                return "<absent>"
            d = d[part]
        return d

    parts = []
    for k in keys:
        if k in ("trials", "rungs"):
            parts.append(f"{k} (derived)")
        else:
            a, b = json.dumps(get(old, k)), json.dumps(get(new, k))
            parts.append(f"{k}: {a if len(a) < 60 else a[:57] + '...'} -> {b if len(b) < 60 else b[:57] + '...'}")
    return "; ".join(parts)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def lock_protocol(spec: dict, out: str | Path, reason: str | None = None) -> dict:
    """Write the protocol of ``spec`` to ``out`` unless a different one is recorded there (or,
    when ``out`` was removed, last in protocol_history.json next to it). A change needs a
    reason not used before; it is appended to the history with the old protocol."""
    out = Path(out)
    history_path = out.parent / HISTORY_NAME
    new = build_protocol(spec)
    history = read_json(history_path) if history_path.exists() else []
    if not isinstance(history, list):
        raise InputError(f"{history_path}: expected a JSON list of protocol records")
    if out.exists():
        old, source = read_json(out), out
    elif history:
        old, source = history[-1]["protocol"], history_path
    else:
        old, source = None, None
    reason = (reason or "").strip() or None
    if old is None:
        history.append({"at": now(), "reason": None, "changed": [], "previous": None, "protocol": new})
    elif old == new:
        if not history:  # a protocol.json written before histories existed
            history.append({"at": now(), "reason": None, "changed": [], "previous": None, "protocol": new})
    else:
        changed = diff_keys(old, new)
        what = _describe(old, new, changed)
        if reason is None:
            raise InputError(
                f"{source}: the tuning protocol is locked and the config changes it: {what}. "
                "Revert the change, or record why in tuning.protocol_change_reason "
                "(it is kept in protocol_history.json)")
        used = [h["reason"] for h in history if h.get("reason")]
        if reason in used:
            raise InputError(
                f"{source}: the tuning protocol changes ({what}) but tuning.protocol_change_reason "
                f"{reason!r} was already recorded for an earlier change; give the reason for this one")
        if not history:
            history.append({"at": None, "reason": None, "changed": [], "previous": None, "protocol": old})
        history.append({"at": now(), "reason": reason, "changed": changed, "previous": old, "protocol": new})
        log.warning("tuning protocol changed (%s); reason: %s", what, reason)
    write_json(history, history_path)
    write_json(new, out)
    return new


def read_protocol(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no tuning protocol; run `imagenot tune protocol` first")
    p = read_json(path)
    if not isinstance(p, dict) or p.get("format") != PROTOCOL_FORMAT:
        raise InputError(f"{path}: field 'format': not a {PROTOCOL_FORMAT} file")
    return p


# --------------------------------------------------------------------------- rungs


def _score(entry: dict) -> float:
    v = entry.get("val_acc")
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def rank(results: list[dict]) -> list[dict]:
    """Best first: validation accuracy descending, ties to the lower trial number; diverged
    or failed trials (val_acc null) last."""
    return sorted(results, key=lambda e: (-_score(e), e["trial"]))


def pick_trial(protocol: dict, rung: int, slot: int, previous: dict | None) -> dict:
    """Which trial slot ``slot`` of rung ``rung`` trains: {trial, from} where ``from`` is the
    previous rung's result entry (None in rung 0)."""
    plan = protocol["rungs"]
    if not 0 <= rung < len(plan):
        raise InputError(f"rung {rung}: the protocol has rungs 0..{len(plan) - 1}")
    if not 0 <= slot < plan[rung]["slots"]:
        raise InputError(f"rung {rung}: slot {slot} out of range (rung has {plan[rung]['slots']} slots)")
    if rung == 0:
        return {"trial": slot, "from": None}
    if previous is None:
        raise InputError(f"rung {rung}: the summary of rung {rung - 1} is required (--previous)")
    if previous.get("rung") != rung - 1:
        raise InputError(f"--previous: field 'rung' is {previous.get('rung')!r}, expected {rung - 1}")
    ranking = previous["ranking"]
    if slot >= len(ranking):
        raise InputError(f"--previous: rung {rung - 1} ranks {len(ranking)} trials, slot {slot} needs more")
    entry = ranking[slot]
    return {"trial": entry["trial"], "from": entry}


def trial_recipe(protocol: dict, model: str, trial: int) -> tuple[dict, dict]:
    """(recipe, overrides) of ``trial`` on ``model``: the model's base recipe with the trial's
    resolved hyperparameters and the tuning horizon as epochs."""
    if model not in protocol["models"]:
        raise InputError(f"unknown model '{model}'; the protocol has {sorted(protocol['models'])}")
    base = protocol["models"][model]
    params = protocol["trials"][trial]["params"]
    overrides = resolve(params, base, protocol["tuning"]["space"])
    recipe = dict(base, **overrides, epochs=int(protocol["tuning"]["max_epochs"]))
    return recipe, overrides


class _RungBudgetReached(Exception):
    pass


def _metrics_from_checkpoint(path: Path) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"best_val_acc": ckpt["best"]["val_acc"], "best_epoch": ckpt["best"]["epoch"],
            "epochs_run": ckpt["epoch"], "stopped_early": bool(ckpt["stopped_early"]),
            "diverged": bool(ckpt.get("diverged", False)), "seconds": ckpt.get("seconds"),
            "identity": ckpt.get("identity")}


def _at_budget(path: Path, budget: int, model: str, recipe: dict, seed: int) -> bool:
    """Whether ``path`` is this trial's checkpoint already trained to ``budget`` epochs (a
    rerun of the job must not train it further)."""
    from . import train as T

    if not path.exists():
        return False
    try:
        m = _metrics_from_checkpoint(path)
    except Exception:  # unreadable: train() reports it and restarts
        return False
    ident = m["identity"] or {}
    return (m["epochs_run"] >= budget and ident.get("model") == model and ident.get("seed") == seed
            and ident.get("recipe") == T.validate_recipe(recipe, model))


def run_trial(protocol_path, model: str, dataset: str, rung: int, slot: int, data_dir, params: dict,
              out_dir, previous_path=None) -> dict:
    """Train slot ``slot`` of rung ``rung`` and write ``trial.json`` in ``out_dir``."""
    from . import train as T

    protocol = read_protocol(protocol_path)
    if dataset not in protocol["datasets"]:
        raise InputError(f"{protocol_path}: dataset '{dataset}' is not in the protocol ({protocol['datasets']})")
    previous = read_json(previous_path) if previous_path else None
    pick = pick_trial(protocol, rung, slot, previous)
    trial = pick["trial"]
    recipe, overrides = trial_recipe(protocol, model, trial)
    budget = protocol["rungs"][rung]["epochs"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "checkpoint.pt"
    marker = out_dir / "slot.json"
    # a checkpoint left here by another trial (the ranking above changed) is not ours
    if ckpt.exists() and (not marker.exists() or read_json(marker).get("trial") != trial):
        ckpt.unlink()
    write_json({"trial": trial, "rung": rung, "slot": slot}, marker)
    resumed_from = None
    if not ckpt.exists() and pick["from"] is not None:
        src = Path(pick["from"]["dir"]) / "checkpoint.pt"
        if src.exists():
            # moved, not copied: the promoted trial continues here (checkpoints are large)
            try:
                os.replace(src, ckpt)
            except OSError:
                shutil.copy2(src, ckpt)
            resumed_from = {"rung": rung - 1, "slot": pick["from"]["slot"]}
        else:
            log.warning("%s: no checkpoint of trial %d from rung %d; training it from scratch", src, trial, rung - 1)

    seed = int(protocol["tuning"]["trial_seed"])
    # a trial ends at the tuning horizon (its recipe's epochs), not at training.max_epochs
    params = dict(params, max_epochs=None)

    def stop_at_budget(epoch: int) -> None:
        # after the epoch's checkpoint is saved; the last rung (budget = horizon) runs to the end
        if budget < recipe["epochs"] and epoch >= budget:
            raise _RungBudgetReached

    diverged_at_start = False
    try:
        if budget < recipe["epochs"] and _at_budget(ckpt, budget, model, recipe, seed):
            log.info("%s: trial %d already trained to this rung's %d epochs", ckpt, trial, budget)
        else:
            T.train(model, recipe, data_dir, seed, params, out_dir, on_epoch_end=stop_at_budget)
    except _RungBudgetReached:
        pass
    except FloatingPointError as e:  # diverged in its first epoch: a legitimate trial outcome
        log.warning("trial %d: %s", trial, e)
        diverged_at_start = True
    if diverged_at_start:
        metrics = {"best_val_acc": None, "best_epoch": 0, "epochs_run": 1, "stopped_early": True,
                   "diverged": True, "seconds": None}
    else:
        metrics = _metrics_from_checkpoint(ckpt)
    result = {
        "dataset": dataset, "model": model, "rung": rung, "slot": slot, "trial": trial,
        "epochs_budget": budget, "horizon": recipe["epochs"], "seed": seed,
        "params": protocol["trials"][trial]["params"], "overrides": overrides,
        "val_acc": metrics["best_val_acc"], "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"], "stopped_early": metrics["stopped_early"],
        "diverged": metrics["diverged"], "seconds": metrics["seconds"],
        "resumed_from": resumed_from, "dir": str(out_dir), "protocol_sha256": sha256(protocol),
    }
    write_json(result, out_dir / "trial.json")
    return result


def summarize_rung(protocol_path, rung: int, trial_paths: list, out, keep_checkpoints: bool = True) -> dict:
    """Rank the slots of one rung; without keep_checkpoints, delete the checkpoints of the
    trials that the next rung does not promote."""
    protocol = read_protocol(protocol_path)
    plan = protocol["rungs"]
    if not 0 <= rung < len(plan):
        raise InputError(f"rung {rung}: the protocol has rungs 0..{len(plan) - 1}")
    results = [read_json(p) for p in trial_paths]
    if len(results) != plan[rung]["slots"]:
        raise InputError(f"rung {rung}: {len(results)} trial results given, the protocol has {plan[rung]['slots']} slots")
    for p, r in zip(trial_paths, results):
        for key in ("trial", "val_acc", "rung", "slot", "dir"):
            if key not in r:
                raise InputError(f"{p}: missing field '{key}'")
        if r["rung"] != rung:
            raise InputError(f"{p}: field 'rung' is {r['rung']}, expected {rung}")
        if not 0 <= r["trial"] < len(protocol["trials"]):
            raise InputError(f"{p}: field 'trial': trial {r['trial']} is not in the protocol (0..{len(protocol['trials']) - 1})")
    keys = {(r["dataset"], r["model"]) for r in results}
    if len(keys) != 1:
        raise InputError(f"rung {rung}: trial results from several (dataset, model) pairs: {sorted(keys)}")
    ranking = [{k: r[k] for k in ("trial", "slot", "val_acc", "best_epoch", "epochs_run", "diverged", "dir", "overrides")}
               for r in rank(results)]
    promoted = plan[rung + 1]["slots"] if rung + 1 < len(plan) else 0
    if not keep_checkpoints and promoted:
        for entry in ranking[promoted:]:
            (Path(entry["dir"]) / "checkpoint.pt").unlink(missing_ok=True)
    (dataset, model), = keys
    summary = {"dataset": dataset, "model": model, "rung": rung, "epochs": plan[rung]["epochs"],
               "promoted": [e["trial"] for e in ranking[:promoted]], "ranking": ranking,
               "protocol_sha256": sha256(protocol)}
    write_json(summary, out)
    return summary


def select_best(protocol_path, summary_path, out) -> dict:
    """best.json: the best trial of the last rung, with its recipe overrides."""
    protocol = read_protocol(protocol_path)
    summary = read_json(summary_path)
    last = len(protocol["rungs"]) - 1
    if summary.get("rung") != last:
        raise InputError(f"{summary_path}: field 'rung' is {summary.get('rung')!r}; best.json is chosen on the last rung ({last})")
    ranking = summary.get("ranking") or []
    if not ranking or _score(ranking[0]) == -math.inf:
        raise InputError(f"{summary_path}: no trial of {summary.get('model')} trained (all diverged); "
                         "the paper widens the space for all models in that case (see docs/TUNING.md)")
    top = ranking[0]
    best = {
        "dataset": summary["dataset"], "model": summary["model"], "trial": top["trial"],
        "val_acc": top["val_acc"], "rung": last, "epochs": summary["epochs"],
        "params": protocol["trials"][top["trial"]]["params"], "overrides": top["overrides"],
        "protocol_sha256": sha256(protocol),
    }
    write_json(best, out)
    return best


def load_overrides(path: str | Path) -> dict:
    """The recipe overrides in a best.json (``imagenot train --overrides``)."""
    path = Path(path)
    try:
        obj = read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: overrides file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("overrides"), dict):
        raise InputError(f"{path}: field 'overrides': expected a JSON object of recipe fields")
    return obj["overrides"]


# --------------------------------------------------------------------------- CLI


def _cmd_protocol(args) -> int:
    spec = parse_json(args.spec, "--spec")
    for key in ("tuning", "models", "datasets", "seeds"):
        if key not in spec:
            raise InputError(f"--spec: missing field '{key}'")
    p = lock_protocol(spec, args.out, spec["tuning"].get("protocol_change_reason"))
    print(f"{args.out}: {len(p['trials'])} trials, rungs {[(r['epochs'], r['slots']) for r in p['rungs']]}")
    return 0


def _cmd_trial(args) -> int:
    params = parse_json(args.params, "--params")
    previous = args.previous[0] if args.previous else None
    r = run_trial(args.protocol, args.model, args.dataset, args.rung, args.slot, args.data_dir, params,
                  args.out_dir, previous)
    print(f"{args.model} rung {args.rung} slot {args.slot}: trial {r['trial']} val_acc {r['val_acc']}")
    return 0


def _cmd_rung(args) -> int:
    summarize_rung(args.protocol, args.rung, args.trials, args.out, keep_checkpoints=args.keep_checkpoints)
    return 0


def _cmd_best(args) -> int:
    b = select_best(args.protocol, args.summary, args.out)
    print(f"{b['model']}: trial {b['trial']} val_acc {b['val_acc']}: {b['overrides']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("tune", help="hyperparameter tuning under a locked protocol (successive halving)")
    tsub = p.add_subparsers(dest="tune_command", required=True, metavar="STEP")

    q = tsub.add_parser("protocol", help="write (or check) the locked tuning protocol before any trial")
    q.add_argument("--spec", required=True, help="JSON {tuning, models: {name: recipe}, datasets, seeds}")
    q.add_argument("--out", required=True, help="protocol.json (protocol_history.json is kept beside it)")
    q.set_defaults(func=_cmd_protocol)

    q = tsub.add_parser("trial", help="train one slot of one successive-halving rung")
    q.add_argument("--protocol", required=True)
    q.add_argument("--model", required=True)
    q.add_argument("--dataset", required=True)
    q.add_argument("--rung", required=True, type=int)
    q.add_argument("--slot", required=True, type=int)
    q.add_argument("--previous", nargs="*", default=[], help="rung r-1 summary (none for rung 0)")
    q.add_argument("--data-dir", required=True)
    q.add_argument("--params", required=True, help="JSON: the config's training section (device, threads, ...)")
    q.add_argument("--out-dir", required=True)
    q.set_defaults(func=_cmd_trial)

    q = tsub.add_parser("rung", help="rank the trials of one rung")
    q.add_argument("--protocol", required=True)
    q.add_argument("--rung", required=True, type=int)
    q.add_argument("--trials", required=True, nargs="+", help="the rung's trial.json files")
    q.add_argument("--keep-checkpoints", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the checkpoints of trials the next rung drops (default: keep)")
    q.add_argument("--out", required=True)
    q.set_defaults(func=_cmd_rung)

    q = tsub.add_parser("best", help="the best trial of the last rung as recipe overrides (best.json)")
    q.add_argument("--protocol", required=True)
    q.add_argument("--summary", required=True, help="the last rung's summary")
    q.add_argument("--out", required=True)
    q.set_defaults(func=_cmd_best)
