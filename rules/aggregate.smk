# Tables and figures. Each is a named target: `snakemake fig1`, `snakemake rank_agreement`.
# Tables are written as CSV, Markdown (.md) and LaTeX (.tex); figures as PNG and PDF.
# `snakemake --report report.html` collects every one with its caption (workflow/report/).


report: "../workflow/report/workflow.rst"


def table_files(name):
    """A table target's three files: CSV (for programs), Markdown and LaTeX (plain paths)."""
    return {"csv": f"{TABLES}/{name}.csv", "md": f"{TABLES}/{name}.md", "tex": f"{TABLES}/{name}.tex"}


def figure_files(stem):
    """A figure target's PNG and PDF (plain paths)."""
    return {"png": f"{FIGURES}/{stem}.png", "pdf": f"{FIGURES}/{stem}.pdf"}


# The report() flag goes on rule outputs only: a flagged path in another rule's input (such
# as `all`) would carry a caption path relative to that rule's file.
def table_outputs(name, category="Tables"):
    files = table_files(name)
    files["csv"] = report(files["csv"], caption=f"../workflow/report/{name}.rst", category=category,
                          labels={"table": name, "format": "CSV"})
    return files


def figure_outputs(stem, name, category="Figures"):
    files = figure_files(stem)
    files["png"] = report(files["png"], caption=f"../workflow/report/{name}.rst", category=category,
                          labels={"figure": name})
    return files


rule accuracies:
    """Table: top-1 with 95% interval per (model, dataset, seed)."""
    input:
        metrics=run_outputs("eval", "metrics.json"),
    output:
        **table_outputs("accuracies"),
    log:
        "logs/aggregate/accuracies.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate accuracies --metrics {input.metrics} --out {output.csv} > {log} 2>&1"


rule rank_agreement:
    """Table: Spearman and Kendall rank agreement with the reference and between datasets."""
    input:
        accuracies=rules.accuracies.output.csv,
        reference=rules.reference_accuracies.output[0],
        predictions=run_outputs("eval", "predictions.parquet"),
    output:
        **table_outputs("rank_agreement"),
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
        " --params {params.analysis:q} --reference-name {params.reference:q} --out {output.csv} > {log} 2>&1"


rule pairwise:
    """Table: McNemar tests per dataset: which rank swaps against the reference are within noise."""
    input:
        accuracies=rules.accuracies.output.csv,
        reference=rules.reference_accuracies.output[0],
        predictions=run_outputs("eval", "predictions.parquet"),
        metrics=run_outputs("eval", "metrics.json"),
    output:
        **table_outputs("pairwise"),
    params:
        analysis=as_json(config["analysis"]),
    log:
        "logs/aggregate/pairwise.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate pairwise --accuracies {input.accuracies} --reference {input.reference}"
        " --predictions {input.predictions} --params {params.analysis:q} --out {output.csv} > {log} 2>&1"


rule fig_rank_stability:
    """Figure + table: P(full-test-set ranking recovered) vs number of test examples."""
    input:
        accuracies=rules.accuracies.output.csv,
        predictions=run_outputs("eval", "predictions.parquet"),
        metrics=run_outputs("eval", "metrics.json"),
    output:
        **figure_outputs("fig_rank_stability", "fig_rank_stability"),
        **table_outputs("rank_stability"),
    params:
        analysis=as_json(config["analysis"]),
    log:
        "logs/aggregate/fig_rank_stability.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate rank-stability --accuracies {input.accuracies} --predictions {input.predictions}"
        " --params {params.analysis:q} --out {output.csv} --out-png {output.png} --out-pdf {output.pdf}"
        " > {log} 2>&1"


rule fig1:
    """Figure 1: accuracy relative to the baseline (AlexNet), models in reference order."""
    input:
        accuracies=rules.accuracies.output.csv,
        reference=rules.reference_accuracies.output[0],
    output:
        **figure_outputs("fig1_relative_improvement", "fig1"),
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


rule fig9:
    """Figure 9: ranking and relative improvement, clean, robust (17 augmentations) and CIFAR-10 panels."""
    input:
        accuracies=rules.accuracies.output.csv,
        reference=rules.reference_accuracies.output[0],
        robustness=run_outputs("eval", "robustness.json"),
    output:
        **figure_outputs("fig9_ranking_robustness", "fig9"),
    params:
        models=as_json(model_labels()),
        analysis=as_json(config["analysis"]),
        reference=config["reference"]["name"],
        panels=[d for d in DATASETS if d not in CURATED],
    log:
        "logs/aggregate/fig9.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate fig9 --accuracies {input.accuracies} --reference {input.reference}"
        " --robustness {input.robustness} --panel-datasets {params.panels}"
        " --models {params.models:q} --params {params.analysis:q} --reference-name {params.reference:q}"
        " --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule fig8a:
    """Figure 8a: CIFAR-10 accuracy after fine-tuning all layers vs pretraining test accuracy."""
    input:
        transfer=transfer_results("finetune"),
    output:
        **figure_outputs("fig8a_finetune", "fig8a"),
    params:
        models=as_json(model_labels()),
        analysis=as_json(config["analysis"]),
    log:
        "logs/aggregate/fig8a.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate fig8 --mode finetune --transfer {input.transfer} --models {params.models:q}"
        " --params {params.analysis:q} --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule fig8b:
    """Figure 8b: CIFAR-10 accuracy of a linear classifier on frozen features vs pretraining test accuracy."""
    input:
        transfer=transfer_results("linear"),
    output:
        **figure_outputs("fig8b_linear", "fig8b"),
    params:
        models=as_json(model_labels()),
        analysis=as_json(config["analysis"]),
    log:
        "logs/aggregate/fig8b.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot aggregate fig8 --mode linear --transfer {input.transfer} --models {params.models:q}"
        " --params {params.analysis:q} --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


# Every table's Markdown and LaTeX, and the figures and tables that need only predictions.
ALL_TARGETS += [
    f"{TABLES}/accuracies.md",
    f"{TABLES}/accuracies.tex",
    f"{TABLES}/rank_agreement.md",
    f"{TABLES}/rank_agreement.tex",
    *table_files("pairwise").values(),
    *figure_files("fig_rank_stability").values(),
    *table_files("rank_stability").values(),
]

# Figures whose inputs come from the robustness and transfer stages, when those are enabled.
ANALYSIS_TARGETS = []
if config["evaluation"]["robustness"]["enabled"]:
    ANALYSIS_TARGETS += figure_files("fig9_ranking_robustness").values()
if "finetune" in config["transfer"]["modes"]:
    ANALYSIS_TARGETS += figure_files("fig8a_finetune").values()
if "linear" in config["transfer"]["modes"]:
    ANALYSIS_TARGETS += figure_files("fig8b_linear").values()
ALL_TARGETS += ANALYSIS_TARGETS
