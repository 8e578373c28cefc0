# The corpus: LAION metadata parquet parts (fetched when a URL template is configured), or
# the embedded demo corpus, generated here and served over HTTP by the download rule.

if DEMO:

    rule demo_corpus:
        """Generate the demo corpus: LAION-style metadata from real WordNet lemmas, and images."""
        input:
            WORDNET_DIR,
        output:
            metadata=[SUBSETS["demo"]["path"].format(part=p) for p in icfg.part_ids(SUBSETS["demo"])],
            images=directory("results/corpus/demo/images"),
            manifest="results/corpus/demo/manifest.json",
        params:
            demo=as_json(DEMO),
        log:
            "logs/demo_corpus.log",
        conda:
            "../envs/download.yaml"
        shell:
            "imagenot demo-corpus --wordnet-root {WORDNET_ROOT} --out-dir results/corpus/demo"
            " --params {params.demo:q} > {log} 2>&1"


for _name, _subset in SUBSETS.items():
    if "url" in _subset:

        rule:
            name:
                f"fetch_{_name}"
            output:
                _subset["path"],
            params:
                url=lambda w, s=_subset: s["url"].format(part=w.part),
            log:
                f"logs/fetch/{_name}/{{part}}.log",
            resources:
                fetch_slots=1,
            conda:
                "../envs/download.yaml"
            shell:
                "imagenot fetch --url {params.url:q} --out {output} > {log} 2>&1"
