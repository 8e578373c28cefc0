# Curation, steps 1-8 of the paper (section 3). Step 1 runs once per metadata part
# (scatter); the later steps gather per synset.
# curation.classes.mode: published takes the classes from curation.classes.file and skips
# class selection (steps 2-5, the step 7 threshold, CLIP ranking); clip.source: open_clip adds
# the curate_clip_scores job (LAION's CLIP image embeddings x open_clip class prompts).

CLASSES = config["curation"].get("classes", {})
PUBLISHED_CLASSES = CLASSES.get("file", "config/imagenot_classes.txt") if CLASSES.get("mode") == "published" else None
OPEN_CLIP = config["curation"].get("clip", {}).get("source") == "open_clip"


rule curate_vocab:
    """All WordNet noun lemmas and their plural forms, and the synset table (cached once)."""
    input:
        WORDNET_DIR,
    output:
        synsets="results/curate/synsets.parquet",
        vocab="results/curate/vocab.parquet",
    log:
        "logs/curate/vocab.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate vocab --wordnet-root {WORDNET_ROOT}"
        " --out-synsets {output.synsets} --out-vocab {output.vocab} > {log} 2>&1"


rule curate_match:
    """Step 1: noun synsets named in each caption of one metadata part."""
    input:
        metadata=metadata_part,
        vocab=rules.curate_vocab.output.vocab,
    output:
        matches="results/curate/matches/{subset}/{part}.parquet",
        report="results/curate/matches/{subset}/{part}.json",
    params:
        columns=as_json(config["corpus"]["columns"]),
        max_punsafe=config["curation"]["max_punsafe"],
        max_caption_bytes=config["curation"].get("max_caption_bytes", 10000),
    log:
        "logs/curate/match/{subset}/{part}.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate match --input {input.metadata} --vocab {input.vocab}"
        " --columns {params.columns:q} --max-punsafe {params.max_punsafe}"
        " --key-prefix {wildcards.subset}/{wildcards.part} --max-caption-bytes {params.max_caption_bytes}"
        " --out {output.matches} --report {output.report} > {log} 2>&1"


rule curate_candidates:
    """Steps 2-5: ImageNet removal, minimum size, leaves of the minimal subtree, NSFW."""
    input:
        matches=all_match_parts(),
        synsets=rules.curate_vocab.output.synsets,
        classes=PUBLISHED_CLASSES or [],
    output:
        candidates="results/curate/candidates.parquet",
        report="results/curate/candidates.json",
    params:
        curation=lambda wildcards: as_json(config["curation"]),  # a function: {part} in paths is not a wildcard
        classes=f"--classes-file {PUBLISHED_CLASSES}" if PUBLISHED_CLASSES else "",
    log:
        "logs/curate/candidates.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate candidates --matches {input.matches} --synsets {input.synsets}"
        " --params {params.curation:q} {params.classes} --out {output.candidates} --report {output.report} > {log} 2>&1"


rule curate_captions:
    """Step 6: captions naming exactly one candidate synset."""
    input:
        matches=all_match_parts(),
        candidates=rules.curate_candidates.output.candidates,
    output:
        captions="results/curate/captions.parquet",
        report="results/curate/captions.json",
    log:
        "logs/curate/captions.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate captions --matches {input.matches} --candidates {input.candidates}"
        " --out {output.captions} --report {output.report} > {log} 2>&1"


rule curate_text_similarity:
    """Step 7: caption x synset-gloss text-embedding similarity."""
    input:
        captions=rules.curate_captions.output.captions,
        synsets=rules.curate_vocab.output.synsets,
    output:
        "results/curate/text_similarity.parquet",
    params:
        text=as_json(config["curation"]["text_similarity"]),
    log:
        "logs/curate/text_similarity.log",
    threads: 2
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate text-similarity --captions {input.captions} --synsets {input.synsets}"
        " --params {params.text:q} --out {output} > {log} 2>&1"


rule curate_clip_scores:
    """Step 8 with open_clip: class-prompt x image CLIP similarity from LAION's image embeddings."""
    input:
        text_similarity=rules.curate_text_similarity.output[0],
        synsets=rules.curate_vocab.output.synsets,
    output:
        "results/curate/clip_scores.parquet",
    params:
        clip=lambda wildcards: as_json(config["curation"].get("clip", {})),
    log:
        "logs/curate/clip_scores.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate clip-scores --text-similarity {input.text_similarity} --synsets {input.synsets}"
        " --params {params.clip:q} --out {output} > {log} 2>&1"


rule curate_select:
    """Steps 7-8: similarity threshold, CLIP ranking, K classes x N images (published mode:
    the listed classes, images by caption x gloss similarity)."""
    input:
        text_similarity=rules.curate_text_similarity.output[0],
        candidates=rules.curate_candidates.output.candidates,
        classes=PUBLISHED_CLASSES or [],
        clip_scores=rules.curate_clip_scores.output[0] if OPEN_CLIP and not PUBLISHED_CLASSES else [],
    output:
        classes="results/curate/classes.parquet",
        selection="results/curate/selection.parquet",
        table=report(f"{TABLES}/curation_filters.csv", caption="../workflow/report/curation_filters.rst",
                     category="Curation", labels={"table": "curation_filters", "format": "CSV"}),
    params:
        curation=lambda wildcards: as_json(config["curation"]),  # a function: {part} in paths is not a wildcard
        extra=(f"--classes-file {PUBLISHED_CLASSES}" if PUBLISHED_CLASSES
               else "--clip-scores results/curate/clip_scores.parquet" if OPEN_CLIP else ""),
    log:
        "logs/curate/select.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot curate select --text-similarity {input.text_similarity}"
        " --candidates {input.candidates} --params {params.curation:q} {params.extra}"
        " --out-classes {output.classes} --out-selection {output.selection}"
        " --out-table {output.table} > {log} 2>&1"


rule curation_table:
    """Named target: synsets and captions removed by each curation filter."""
    input:
        rules.curate_select.output.table,
