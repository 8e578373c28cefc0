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
