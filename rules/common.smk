# Configuration, validation and the input functions that choose files. No logic beyond that.
import json

from snakemake.utils import validate

import imagenot.config as icfg

# The package's check first: it reports every schema error (not only the first) by key path,
# then the checks a schema cannot express. Snakemake's own validator then fills in defaults.
icfg.validate(config, source="workflow config")
validate(config, schema="../workflow/schemas/config.schema.yaml")

WORDNET_ROOT = config["wordnet"]["root"]
WORDNET_DIR = f"{WORDNET_ROOT}/corpora/wordnet"

SUBSETS = {s["name"]: s for s in config["corpus"]["subsets"]}
PARTS = [(name, part) for name, s in SUBSETS.items() for part in icfg.part_ids(s)]
DEMO = config["corpus"].get("demo")

MODELS = list(config["models"])
SEEDS = config["training"]["seeds"]
DATASETS = list(config["datasets"])
CURATED = [d for d, spec in config["datasets"].items() if spec["source"] == "curated"]
BENCHMARKS = [d for d, spec in config["datasets"].items() if spec["source"] in ("cifar10", "digits")]

TABLES = "results/tables"
FIGURES = "results/figures"


wildcard_constraints:
    subset="[A-Za-z0-9_.-]+",
    part="[0-9]+",
    dataset="[A-Za-z0-9_.-]+",
    model="[A-Za-z0-9_.-]+",
    seed="[0-9]+",


def as_json(obj):
    """Config sections travel to the package as one JSON argument (quoted with :q)."""
    return json.dumps(obj, sort_keys=True)


def metadata_part(wildcards):
    return SUBSETS[wildcards.subset]["path"].format(part=wildcards.part)


def all_match_parts(kind="parquet"):
    return [f"results/curate/matches/{s}/{p}.{kind}" for s, p in PARTS]


def dataset_dir(wildcards):
    spec = config["datasets"][wildcards.dataset]
    if wildcards.dataset in CURATED + BENCHMARKS:  # built by the workflow (split, benchmark_dataset)
        return f"results/datasets/{wildcards.dataset}"
    return spec["path"]


def recipe(wildcards):
    return as_json(icfg.merged_recipe(config, wildcards.model))


def model_labels():
    """What the reference table and figures need of each model (not its training recipe)."""
    return {
        name: {k: m[k] for k in ("display_name", "reference_weights") if k in m}
        for name, m in config["models"].items()
    }


def training_params():
    return {k: v for k, v in config["training"].items() if k not in ("recipe_defaults", "seeds")}


def train_launcher(wildcards, resources):
    """`imagenot`, or torchrun with one process per GPU when the job gets several (resources.gpu)."""
    gpus = int(getattr(resources, "gpu", 0) or 0)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} --no-python imagenot"
    return "imagenot"


def run_outputs(stage, filename):
    return expand(
        f"results/{stage}/{{dataset}}/{{model}}/seed{{seed}}/{filename}",
        dataset=DATASETS,
        model=MODELS,
        seed=SEEDS,
    )


def transfer_results(mode):
    """results/transfer/{dataset}/{model}/seed{seed}/{mode}.json for every run pretrained on
    the curated dataset (models trained on a benchmark such as CIFAR-10 are not transferred)."""
    return expand(
        f"results/transfer/{{dataset}}/{{model}}/seed{{seed}}/{mode}.json",
        dataset=CURATED,
        model=MODELS,
        seed=SEEDS,
    )


ALL_TARGETS = [
    f"{TABLES}/curation_filters.csv",
    f"{TABLES}/accuracies.csv",
    f"{TABLES}/rank_agreement.csv",
    f"{FIGURES}/fig1_relative_improvement.png",
    f"{FIGURES}/fig1_relative_improvement.pdf",
]

# The curation tables and figures (rules/curate_figures.smk); Figures 6 and 10 only when the
# config names CLIP image embeddings (figures.image_embeddings).
ALL_TARGETS += [
    f"{TABLES}/table3_wordnet_subtree.csv",
    f"{TABLES}/table3_published.csv",
    f"{FIGURES}/fig4_text_similarity_stats.png",
    f"{FIGURES}/fig5_text_similarity_distributions.png",
    f"{FIGURES}/fig11_synset_depth.png",
    f"{FIGURES}/fig12_siblings.png",
]
if config.get("figures", {}).get("image_embeddings"):
    ALL_TARGETS += [
        f"{FIGURES}/fig6_inter_class_similarity.png",
        f"{FIGURES}/fig10_intra_class_similarity.png",
    ]

def transfer_runtime():
    """Run-time options of `imagenot transfer`, from the training section."""
    keys = ("device", "threads", "amp")
    runtime = {k: config["training"][k] for k in keys if k in config["training"]}
    return dict(runtime, eval_batch_size=config["evaluation"]["batch_size"])


# robustness (evaluation.robustness.enabled) and transfer (transfer.modes) for every run
if config["evaluation"]["robustness"]["enabled"]:
    ALL_TARGETS += run_outputs("eval", "robustness.json")
ALL_TARGETS += [path for mode in config["transfer"]["modes"] for path in transfer_results(mode)]
