# The paper's curation tables and figures: Table 3 (WordNet subtree statistics), Figures 4
# and 5 (caption x gloss similarity), 11 (synset depth), 12 (siblings), and, when config
# figures.image_embeddings names CLIP image embeddings, 6 and 10 (image similarity).
# Each is a named target: `snakemake table3`, `snakemake table3_published`, `snakemake fig4`.

import os
import shlex

FIGURE_EMBEDDINGS = config.get("figures", {}).get("image_embeddings", {})


def published_classes():
    """figures.published_classes; a relative path not found in the working directory is
    looked up beside the Snakefile (where the shipped config/imagenot_classes.txt lives)."""
    p = config.get("figures", {}).get("published_classes", "config/imagenot_classes.txt")
    shipped = os.path.join(workflow.basedir, p)
    if not os.path.isabs(p) and not os.path.exists(p) and os.path.exists(shipped):
        return shipped
    return p


PUBLISHED_CLASSES = published_classes()


rule table3:
    """Table 3: WordNet subtree statistics of the curated classes and of ImageNet-1k."""
    input:
        wordnet=WORDNET_DIR,
        classes=rules.curate_select.output.classes,
    output:
        **table_outputs("table3_wordnet_subtree", "Curation"),
    log:
        "logs/figures/table3.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot table3 --wordnet-root {WORDNET_ROOT} --classes {input.classes}"
        " --classes builtin:imagenet-1k --names ImageNot ImageNet"
        " --out {output.csv} --out {output.md} --out {output.tex} > {log} 2>&1"


rule table3_published:
    """Table 3 for the published ImageNot class list against ImageNet-1k (no curation needed)."""
    input:
        wordnet=WORDNET_DIR,
        classes=PUBLISHED_CLASSES,
    output:
        **table_outputs("table3_published", "Curation"),
    log:
        "logs/figures/table3_published.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot table3 --wordnet-root {WORDNET_ROOT} --classes {input.classes}"
        " --classes builtin:imagenet-1k --names ImageNot-published ImageNet"
        " --out {output.csv} --out {output.md} --out {output.tex} > {log} 2>&1"


rule fig4:
    """Figure 4: caption x synset-gloss similarity statistics per class (step 7's input)."""
    input:
        text_similarity=rules.curate_text_similarity.output[0],
        classes=rules.curate_select.output.classes,
    output:
        **figure_outputs("fig4_text_similarity_stats", "fig4", "Curation"),
        csv=f"{TABLES}/fig4_text_similarity_stats.csv",
    params:
        text=as_json(config["curation"]["text_similarity"]),
    log:
        "logs/figures/fig4.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot curation-figures fig4 --text-similarity {input.text_similarity} --classes {input.classes}"
        " --params {params.text:q} --out-png {output.png} --out-pdf {output.pdf} --out-csv {output.csv} > {log} 2>&1"


rule fig5:
    """Figure 5: caption x synset-gloss similarity distribution of each selected class."""
    input:
        text_similarity=rules.curate_text_similarity.output[0],
        classes=rules.curate_select.output.classes,
    output:
        **figure_outputs("fig5_text_similarity_distributions", "fig5", "Curation"),
    params:
        text=as_json(config["curation"]["text_similarity"]),
    log:
        "logs/figures/fig5.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot curation-figures fig5 --text-similarity {input.text_similarity} --classes {input.classes}"
        " --params {params.text:q} --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule fig11:
    """Figure 11: WordNet depth of the curated classes and of ImageNet-1k."""
    input:
        wordnet=WORDNET_DIR,
        classes=rules.curate_select.output.classes,
    output:
        **figure_outputs("fig11_synset_depth", "fig11", "Curation"),
        csv=f"{TABLES}/fig11_fig12_wordnet_classes.csv",
    log:
        "logs/figures/fig11.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curation-figures fig11 --wordnet-root {WORDNET_ROOT} --classes {input.classes}"
        " --classes builtin:imagenet-1k --names ImageNot ImageNet"
        " --out-png {output.png} --out-pdf {output.pdf} --out-csv {output.csv} > {log} 2>&1"


rule fig12:
    """Figure 12: number of siblings of the curated and ImageNet-1k classes in their subtrees."""
    input:
        wordnet=WORDNET_DIR,
        classes=rules.curate_select.output.classes,
    output:
        **figure_outputs("fig12_siblings", "fig12", "Curation"),
    log:
        "logs/figures/fig12.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curation-figures fig12 --wordnet-root {WORDNET_ROOT} --classes {input.classes}"
        " --classes builtin:imagenet-1k --names ImageNot ImageNet"
        " --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule fig11_published:
    """Figure 11 for the published ImageNot class list against ImageNet-1k."""
    input:
        wordnet=WORDNET_DIR,
        classes=PUBLISHED_CLASSES,
    output:
        png=f"{FIGURES}/fig11_synset_depth_published.png",
        pdf=f"{FIGURES}/fig11_synset_depth_published.pdf",
    log:
        "logs/figures/fig11_published.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curation-figures fig11 --wordnet-root {WORDNET_ROOT} --classes {input.classes}"
        " --classes builtin:imagenet-1k --names ImageNot-published ImageNet"
        " --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule fig12_published:
    """Figure 12 for the published ImageNot class list against ImageNet-1k."""
    input:
        wordnet=WORDNET_DIR,
        classes=PUBLISHED_CLASSES,
    output:
        png=f"{FIGURES}/fig12_siblings_published.png",
        pdf=f"{FIGURES}/fig12_siblings_published.pdf",
    log:
        "logs/figures/fig12_published.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curation-figures fig12 --wordnet-root {WORDNET_ROOT} --classes {input.classes}"
        " --classes builtin:imagenet-1k --names ImageNot-published ImageNet"
        " --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


rule fig10:
    """Figure 10: intra-class CLIP image similarity (needs figures.image_embeddings)."""
    input:
        list(FIGURE_EMBEDDINGS.values()),
    output:
        **figure_outputs("fig10_intra_class_similarity", "fig10", "Curation"),
        csv=f"{TABLES}/image_similarity.csv",
    params:
        embeddings=" ".join(f"--embeddings {shlex.quote(f'{n}={p}')}" for n, p in FIGURE_EMBEDDINGS.items()),
    log:
        "logs/figures/fig10.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot curation-figures fig10 {params.embeddings}"
        " --out-png {output.png} --out-pdf {output.pdf} --out-csv {output.csv} > {log} 2>&1"


rule fig6:
    """Figure 6: inter-class CLIP image similarity (needs figures.image_embeddings)."""
    input:
        list(FIGURE_EMBEDDINGS.values()),
    output:
        **figure_outputs("fig6_inter_class_similarity", "fig6", "Curation"),
    params:
        embeddings=" ".join(f"--embeddings {shlex.quote(f'{n}={p}')}" for n, p in FIGURE_EMBEDDINGS.items()),
    log:
        "logs/figures/fig6.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "imagenot curation-figures fig6 {params.embeddings}"
        " --out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"
