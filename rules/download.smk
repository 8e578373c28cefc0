# Download the selected images with img2dataset into WebDataset shards, then split them.
# The download's report.json is its completion marker: the shards beside it are not declared
# outputs, so Snakemake never deletes them and an interrupted download resumes.


def demo_server_inputs(wildcards):
    if DEMO:
        return {"images": "results/corpus/demo/images", "manifest": "results/corpus/demo/manifest.json"}
    return {}


rule download:
    wildcard_constraints:
        dataset="|".join(CURATED) or "^$",
    input:
        unpack(demo_server_inputs),
        selection=rules.curate_select.output.selection,
    output:
        report="results/download/{dataset}/report.json",
    params:
        download=as_json(config["download"]),
        serve=(
            f"--serve-root results/corpus/demo --manifest results/corpus/demo/manifest.json"
            f" --port {DEMO['port']}"
            if DEMO
            else ""
        ),
    log:
        "logs/download/{dataset}.log",
    threads: config["download"]["processes"]
    conda:
        "../envs/download.yaml"
    shell:
        "imagenot download --selection {input.selection} --out-dir results/download/{wildcards.dataset}"
        " --params {params.download:q} {params.serve} > {log} 2>&1"


rule split:
    """Per-class train/val/test split into WebDataset shards."""
    wildcard_constraints:
        dataset="|".join(CURATED) or "^$",
    input:
        report="results/download/{dataset}/report.json",
        classes=rules.curate_select.output.classes,
    output:
        directory("results/datasets/{dataset}"),
    params:
        split=as_json({**config["split"], "images_per_class": config["curation"]["images_per_class"]}),
    log:
        "logs/split/{dataset}.log",
    conda:
        "../envs/download.yaml"
    shell:
        "imagenot split --download-dir results/download/{wildcards.dataset} --classes {input.classes}"
        " --params {params.split:q} --out-dir {output} > {log} 2>&1"


rule benchmark_dataset:
    """CIFAR-10 (torchvision) or digits in the split's layout, to train the zoo on from scratch."""
    wildcard_constraints:
        dataset="|".join(BENCHMARKS) or "^$",
    output:
        directory("results/datasets/{dataset}"),
    params:
        spec=lambda wildcards: as_json(config["datasets"][wildcards.dataset]),
    log:
        "logs/benchmark_dataset/{dataset}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "imagenot benchmark-dataset --params {params.spec:q} --out-dir {output} > {log} 2>&1"
