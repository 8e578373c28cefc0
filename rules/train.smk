# One training job per (dataset, model, seed), from scratch, with the model's recipe.
# checkpoint.pt is not a declared output: a killed or preempted job resumes from it.


rule reference_accuracies:
    """ImageNet-1k top-1 of each architecture, read from torchvision's weight metadata."""
    output:
        report(f"{TABLES}/reference_accuracies.csv", caption="../workflow/report/reference_accuracies.rst",
               category="Tables", labels={"table": "reference_accuracies", "format": "CSV"}),
    params:
        models=as_json(model_labels()),
    log:
        "logs/reference_accuracies.log",
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot reference --models {params.models:q} --out {output} > {log} 2>&1"


rule train:
    input:
        data=dataset_dir,
        tuned=tuned_overrides,
    output:
        model="results/train/{dataset}/{model}/seed{seed}/model.pt",
        info="results/train/{dataset}/{model}/seed{seed}/train.json",
        history="results/train/{dataset}/{model}/seed{seed}/history.csv",
    params:
        recipe=recipe,
        training=as_json(training_params()),
        launcher=train_launcher,
    log:
        "logs/train/{dataset}/{model}/seed{seed}.log",
    threads: config["training"]["threads"]
    resources:
        train_slots=1,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.launcher} train --model {wildcards.model} --recipe {params.recipe:q}"
        " --data-dir {input.data} --seed {wildcards.seed} --params {params.training:q}"
        " --overrides {input.tuned}"
        " --out-dir results/train/{wildcards.dataset}/{wildcards.model}/seed{wildcards.seed} > {log} 2>&1"
