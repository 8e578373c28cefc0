# Tables and figures. Each is a named target: `snakemake fig1`, `snakemake rank_agreement`.


rule accuracies:
    """Table: top-1 with 95% interval per (model, dataset, seed)."""
    input:
        metrics=run_outputs("eval", "metrics.json"),
    output:
        f"{TABLES}/accuracies.csv",
    log:
        "logs/aggregate/accuracies.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate accuracies --metrics {input.metrics} --out {output} > {log} 2>&1"


rule rank_agreement:
    """Table: Spearman and Kendall rank agreement with the reference and between datasets."""
    input:
        accuracies=rules.accuracies.output[0],
        reference=rules.reference_accuracies.output[0],
        predictions=run_outputs("eval", "predictions.parquet"),
    output:
        f"{TABLES}/rank_agreement.csv",
    params:
        analysis=as_json(config["analysis"]),
        reference=config["reference"]["name"],
    log:
        "logs/aggregate/rank_agreement.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate rank-agreement --accuracies {input.accuracies}"
        " --reference {input.reference} --predictions {input.predictions}"
        " --params {params.analysis:q} --reference-name {params.reference:q} --out {output} > {log} 2>&1"


rule fig1:
    """Figure 1: accuracy relative to the baseline (AlexNet), models in reference order."""
    input:
        accuracies=rules.accuracies.output[0],
        reference=rules.reference_accuracies.output[0],
    output:
        png=f"{FIGURES}/fig1_relative_improvement.png",
        pdf=f"{FIGURES}/fig1_relative_improvement.pdf",
    params:
        models=as_json(model_labels()),
        analysis=as_json(config["analysis"]),
        reference=config["reference"]["name"],
    log:
        "logs/aggregate/fig1.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate fig1 --accuracies {input.accuracies} --reference {input.reference}"
        " --models {params.models:q} --params {params.analysis:q} --reference-name {params.reference:q}"
        " --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"
