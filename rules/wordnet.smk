rule wordnet:
    """WordNet 3.0 as an NLTK corpus: an existing NLTK copy, nltk.download, or Debian's files."""
    output:
        directory(WORDNET_DIR),
    log:
        "logs/wordnet.log",
    conda:
        "../envs/curate.yaml"
    shell:
        "imagenot wordnet --root {WORDNET_ROOT} > {log} 2>&1"
