# imagenot: does a deliberately different dataset preserve ImageNet's model rankings?
#
#   snakemake --cores 2                      # the embedded demo (config/config.yaml)
#   snakemake -n --configfile config/paper.yaml
#   snakemake fig1                           # one figure by its target name
#   snakemake --list-target-rules            # every named target
#
# Rules are thin: each calls one `imagenot` subcommand (workflow/imagenot/). The stages:
# wordnet -> corpus -> curate -> download -> split -> train -> evaluate -> aggregate.

import os

from snakemake.utils import min_version

min_version("8.20")


# The demo config is the default; `--configfile X` replaces it rather than being merged into it.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config/config.yaml")


include: "rules/common.smk"
include: "rules/wordnet.smk"
include: "rules/corpus.smk"
include: "rules/curate.smk"
include: "rules/download.smk"
include: "rules/tune.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/curate_figures.smk"


# Quick rules run on the submitting host even with a cluster executor (profiles/slurm):
# `wordnet` may need the network, which login nodes usually have and compute nodes often lack.
localrules:
    wordnet,
    reference_accuracies,
    accuracies,
    rank_agreement,
    fig1,


rule all:
    default_target: True
    input:
        ALL_TARGETS,
