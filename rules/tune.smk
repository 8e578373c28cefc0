# Hyperparameter tuning under a locked, equal budget (docs/TUNING.md), when tuning.enabled:
# protocol -> rung 0 trials -> rung 0 ranking -> rung 1 trials -> ... -> best.json, per
# (dataset, model). The final `train` rule then takes best.json's hyperparameters.
# As in `train`, a trial's checkpoint.pt is not a declared output: a killed job resumes.
import imagenot.tune as itune

TUNING = config["tuning"]
TUNE = "results/tune"
RUNGS = itune.rung_plan(TUNING) if TUNING["enabled"] else []


wildcard_constraints:
    rung="[0-9]+",
    slot="[0-9]+",


def tune_spec():
    """What the protocol is made of: the tuning section, the models' recipes, the datasets
    and the final retraining seeds."""
    return {
        "tuning": TUNING,
        "models": {m: icfg.merged_recipe(config, m) for m in MODELS},
        "datasets": DATASETS,
        "seeds": SEEDS,
    }


def previous_rung(wildcards):
    r = int(wildcards.rung)
    return [] if r == 0 else f"{TUNE}/{wildcards.dataset}/{wildcards.model}/rung{r - 1}.json"


def rung_trials(wildcards):
    r = int(wildcards.rung)
    return expand(
        f"{TUNE}/{wildcards.dataset}/{wildcards.model}/rung{r}/slot{{slot}}/trial.json",
        slot=range(RUNGS[r]["slots"]),
    )


def last_rung(wildcards):
    return f"{TUNE}/{wildcards.dataset}/{wildcards.model}/rung{len(RUNGS) - 1}.json"


def tuned_overrides(wildcards):
    """best.json of the (dataset, model) when tuning is on; nothing otherwise."""
    if not TUNING["enabled"]:
        return []
    return f"{TUNE}/{wildcards.dataset}/{wildcards.model}/best.json"


rule tune_protocol:
    """Write the tuning protocol before any trial; refuse a changed one without a reason."""
    output:
        f"{TUNE}/protocol.json",
    params:
        spec=as_json(tune_spec()),
    log:
        "logs/tune/protocol.log",
    shell:
        "imagenot tune protocol --spec {params.spec:q} --out {output} > {log} 2>&1"


rule tune_trial:
    """One slot of one successive-halving rung: the k-th best trial of the previous rung,
    trained on to this rung's epoch budget."""
    input:
        protocol=rules.tune_protocol.output[0],
        previous=previous_rung,
        data=dataset_dir,
    output:
        f"{TUNE}/{{dataset}}/{{model}}/rung{{rung}}/slot{{slot}}/trial.json",
    params:
        training=as_json(training_params()),
    log:
        "logs/tune/{dataset}/{model}/rung{rung}/slot{slot}.log",
    threads: config["training"]["threads"]
    resources:
        train_slots=1,
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot tune trial --protocol {input.protocol} --previous {input.previous}"
        " --model {wildcards.model} --dataset {wildcards.dataset} --rung {wildcards.rung}"
        " --slot {wildcards.slot} --data-dir {input.data} --params {params.training:q}"
        " --out-dir {TUNE}/{wildcards.dataset}/{wildcards.model}/rung{wildcards.rung}/slot{wildcards.slot}"
        " > {log} 2>&1"


rule tune_rung:
    """Rank one rung's trials (the next rung promotes the best)."""
    input:
        protocol=rules.tune_protocol.output[0],
        trials=rung_trials,
    output:
        f"{TUNE}/{{dataset}}/{{model}}/rung{{rung}}.json",
    params:
        keep="--keep-checkpoints" if TUNING["keep_checkpoints"] else "--no-keep-checkpoints",
    log:
        "logs/tune/{dataset}/{model}/rung{rung}.log",
    shell:
        "imagenot tune rung --protocol {input.protocol} --rung {wildcards.rung}"
        " --trials {input.trials} {params.keep} --out {output} > {log} 2>&1"


rule tune_best:
    """The best trial of the last rung on validation accuracy, as recipe overrides."""
    input:
        protocol=rules.tune_protocol.output[0],
        summary=last_rung,
    output:
        f"{TUNE}/{{dataset}}/{{model}}/best.json",
    log:
        "logs/tune/{dataset}/{model}/best.log",
    shell:
        "imagenot tune best --protocol {input.protocol} --summary {input.summary} --out {output} > {log} 2>&1"


rule tune:
    """Target: every (dataset, model)'s best.json (only when tuning.enabled)."""
    input:
        expand(f"{TUNE}/{{dataset}}/{{model}}/best.json", dataset=DATASETS, model=MODELS)
        if TUNING["enabled"]
        else [],
