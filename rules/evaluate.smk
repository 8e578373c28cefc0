rule evaluate:
    """Test accuracy with a 95% interval and per-example predictions."""
    input:
        model=rules.train.output.model,
        data=dataset_dir,
    output:
        predictions="results/eval/{dataset}/{model}/seed{seed}/predictions.parquet",
        metrics="results/eval/{dataset}/{model}/seed{seed}/metrics.json",
    params:
        recipe=recipe,
        evaluation=as_json(config["evaluation"]),
    log:
        "logs/evaluate/{dataset}/{model}/seed{seed}.log",
    threads: config["training"]["threads"]
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot evaluate --model {wildcards.model} --recipe {params.recipe:q}"
        " --checkpoint {input.model} --data-dir {input.data} --params {params.evaluation:q}"
        " --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --out-dir results/eval/{wildcards.dataset}/{wildcards.model}/seed{wildcards.seed} > {log} 2>&1"


rule robustness:
    """Test accuracy under the paper's 17 test-time augmentations (Appendix A.3)."""
    input:
        model=rules.train.output.model,
        data=dataset_dir,
    output:
        result="results/eval/{dataset}/{model}/seed{seed}/robustness.json",
        predictions="results/eval/{dataset}/{model}/seed{seed}/robustness_predictions.parquet",
    params:
        recipe=recipe,
        evaluation=as_json(config["evaluation"]),
    log:
        "logs/robustness/{dataset}/{model}/seed{seed}.log",
    threads: config["training"]["threads"]
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot robustness --model {wildcards.model} --recipe {params.recipe:q}"
        " --checkpoint {input.model} --data-dir {input.data} --params {params.evaluation:q}"
        " --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --out-dir results/eval/{wildcards.dataset}/{wildcards.model}/seed{wildcards.seed} > {log} 2>&1"


rule transfer_data:
    """The transfer target's train / val / test split (CIFAR-10 downloaded once, or digits)."""
    output:
        f"results/transfer/data/{config['transfer']['target']}.npz",
    params:
        transfer=as_json(config["transfer"]),
    log:
        "logs/transfer/data.log",
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot transfer-data --params {params.transfer:q} --out {output} > {log} 2>&1"


rule transfer:
    """Fine-tuning (all layers) or linear transfer (last layer) to the target, Table 2 budget."""
    input:
        model=rules.train.output.model,
        metrics=rules.evaluate.output.metrics,
        target=rules.transfer_data.output[0],
    output:
        "results/transfer/{dataset}/{model}/seed{seed}/{mode}.json",
    wildcard_constraints:
        mode="finetune|linear",
    params:
        recipe=recipe,
        transfer=as_json(config["transfer"]),
        runtime=as_json(transfer_runtime()),
    log:
        "logs/transfer/{dataset}/{model}/seed{seed}/{mode}.log",
    threads: config["training"]["threads"]
    resources:
        train_slots=1,
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot transfer --model {wildcards.model} --recipe {params.recipe:q} --mode {wildcards.mode}"
        " --checkpoint {input.model} --target-data {input.target} --pretrain-metrics {input.metrics}"
        " --params {params.transfer:q} --runtime {params.runtime:q}"
        " --dataset {wildcards.dataset} --seed {wildcards.seed} --out {output} > {log} 2>&1"
