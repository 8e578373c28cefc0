"""``imagenot curate ...``: class and image curation (paper section 3, steps 1-8)."""

from __future__ import annotations

import argparse
import logging
import time

from ..io import parse_json, write_parquet

log = logging.getLogger(__name__)


def add_commands(sub) -> None:
    p = sub.add_parser("curate", help="curate ImageNot classes and images from caption metadata")
    cs = p.add_subparsers(dest="curate_command", required=True, metavar="STEP")

    q = cs.add_parser("vocab", help="WordNet noun synsets and their surface forms (lemmas + plurals)")
    q.add_argument("--wordnet-root", required=True, help="NLTK data root holding corpora/wordnet (WordNet 3.0)")
    q.add_argument("--out-synsets", required=True, help="synsets.parquet")
    q.add_argument("--out-vocab", required=True, help="vocab.parquet")
    q.set_defaults(func=_cmd_vocab)

    q = cs.add_parser("match", help="step 1: synsets named in the captions of one metadata part")
    q.add_argument("--input", required=True, help="LAION metadata parquet part")
    q.add_argument("--vocab", required=True, help="vocab.parquet from `curate vocab`")
    q.add_argument("--columns", default="{}",
                   help='JSON {url,text,width,height,similarity,punsafe} -> column names (config corpus.columns)')
    q.add_argument("--max-punsafe", type=float, default=0.5, help="drop rows whose punsafe exceeds this")
    q.add_argument("--max-caption-bytes", type=int, default=10_000,
                   help="skip (and count) captions longer than this many UTF-8 bytes")
    q.add_argument("--config", default="", help="JSON of config values recorded as provenance")
    q.add_argument("--key-prefix", default=None,
                   help="row keys are KEY_PREFIX/ROW_INDEX, e.g. SUBSET/PART (default: the input file's stem)")
    q.add_argument("--out", required=True, help="matches parquet")
    q.add_argument("--report", required=True, help="report JSON")
    q.set_defaults(func=_cmd_match)

    q = cs.add_parser("candidates", help="steps 2-5: ImageNet, size, subtree-leaf and NSFW filters")
    q.add_argument("--matches", nargs="+", required=True, help="all match parquet parts")
    q.add_argument("--synsets", required=True, help="synsets.parquet from `curate vocab`")
    q.add_argument("--params", required=True, help="JSON of the config's curation section")
    q.add_argument("--classes-file", default=None,
                   help="published-class mode: the class wnids, one per line (skips steps 2-5)")
    q.add_argument("--config", default="", help="JSON of config values recorded as provenance")
    q.add_argument("--out", required=True, help="candidates.parquet")
    q.add_argument("--report", required=True, help="report JSON")
    q.set_defaults(func=_cmd_candidates)

    q = cs.add_parser("captions", help="step 6: captions naming exactly one surviving candidate")
    q.add_argument("--matches", nargs="+", required=True, help="all match parquet parts")
    q.add_argument("--candidates", required=True, help="candidates.parquet")
    q.add_argument("--config", default="", help="JSON of config values recorded as provenance")
    q.add_argument("--out", required=True, help="captions.parquet")
    q.add_argument("--report", required=True, help="report JSON")
    q.set_defaults(func=_cmd_captions)

    q = cs.add_parser("text-similarity", help="step 7: caption x synset-gloss embedding similarity")
    q.add_argument("--captions", required=True, help="captions.parquet")
    q.add_argument("--synsets", required=True, help="synsets.parquet")
    q.add_argument("--params", required=True, help="JSON of curation.text_similarity")
    q.add_argument("--out", required=True, help="text_similarity.parquet")
    q.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda")
    q.add_argument("--work-dir", default=None,
                   help="per-bucket partial results, kept for resuming (default: OUT.parts)")
    q.add_argument("--config", default="", help="JSON of config values recorded as provenance")
    q.set_defaults(func=_cmd_text_similarity)

    q = cs.add_parser("clip-scores", help="step 8 with open_clip: class-prompt x image CLIP similarity per caption")
    q.add_argument("--text-similarity", required=True, help="text_similarity.parquet")
    q.add_argument("--synsets", required=True, help="synsets.parquet")
    q.add_argument("--params", required=True, help="JSON of curation.clip (model, pretrained, image_embeddings)")
    q.add_argument("--out", required=True, help="clip_scores.parquet")
    q.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda")
    q.add_argument("--config", default="", help="JSON of config values recorded as provenance")
    q.set_defaults(func=_cmd_clip_scores)

    q = cs.add_parser("select", help="steps 7-8: similarity filter, CLIP ranking, images per class")
    q.add_argument("--text-similarity", required=True, help="text_similarity.parquet")
    q.add_argument("--candidates", required=True, help="candidates.parquet")
    q.add_argument("--params", required=True, help="JSON of the config's curation section")
    q.add_argument("--out-classes", required=True, help="classes.parquet")
    q.add_argument("--out-selection", required=True, help="selection.parquet")
    q.add_argument("--out-table", required=True, help="curation_filters.csv")
    q.add_argument("--classes-file", default=None,
                   help="published-class mode: labels in this file's order; no step 7 threshold or CLIP ranking")
    q.add_argument("--clip-scores", default=None,
                   help="clip_scores.parquet (key, clip_sim) from `curate clip-scores` (clip.source=open_clip)")
    q.add_argument("--config", default="", help="JSON of config values recorded as provenance")
    q.set_defaults(func=_cmd_select)


def _cmd_vocab(args: argparse.Namespace) -> int:
    from .. import wordnet
    from . import provenance, vocab

    t0 = time.time()
    reader = wordnet.load(args.wordnet_root)
    synsets = vocab.build_synsets(reader)
    voc = vocab.build_vocab(synsets, vocab.read_noun_exceptions(vocab.noun_exc_path(reader)))
    prov = provenance.build("vocab", {"wordnet.root": args.wordnet_root},
                            wordnet=provenance.wordnet_info(reader, args.wordnet_root, len(synsets)), models={})
    vocab.write_with_provenance(synsets, args.out_synsets, prov)
    vocab.write_with_provenance(voc, args.out_vocab, prov)
    log.info("%d synsets, %d surfaces (%d rows) in %.1f s", len(synsets), voc["surface"].nunique(),
             len(voc), time.time() - t0)
    return 0


def _cmd_match(args: argparse.Namespace) -> int:
    from .match import run_match

    run_match(args.input, args.vocab, args.columns, args.max_punsafe, args.out, args.report, args.key_prefix,
              max_caption_bytes=args.max_caption_bytes, config=_config(args))
    return 0


def _config(args: argparse.Namespace) -> dict:
    """``--config JSON`` of a curate command (the config values the rule passes)."""
    return parse_json(getattr(args, "config", ""), "--config", obj=True, empty={})


def _prov(step: str, args: argparse.Namespace, inputs, params: dict | None = None, key: str = "curation") -> dict:
    """Provenance of a step: the config values it got (--params as ``{key: params}``, plus
    --config), else those recorded by its first input; WordNet from its inputs."""
    from . import provenance

    cfg = _config(args)
    if params:
        cfg = {key: params, **cfg}
    inputs = [p for p in inputs if p]
    if not cfg:
        for p in inputs:
            up = provenance.read(p)
            if up and up.get("config"):
                cfg = up["config"]
                break
    return provenance.build(step, cfg, inputs=inputs)


def _cmd_candidates(args: argparse.Namespace) -> int:
    params = parse_json(args.params, "--params (curation)", obj=True, empty={})
    prov = _prov("candidates", args, [args.synsets, args.classes_file, *args.matches], params)
    if args.classes_file:
        from .published import published_candidates

        published_candidates(args.matches, args.synsets, args.classes_file, args.out, args.report, provenance=prov)
        return 0
    from .filters import candidates

    candidates(args.matches, args.synsets, params, args.out, args.report, provenance=prov)
    return 0


def _cmd_captions(args: argparse.Namespace) -> int:
    from .filters import captions

    prov = _prov("captions", args, [args.candidates, *args.matches])
    captions(args.matches, args.candidates, args.out, args.report, provenance=prov)
    return 0


def _cmd_text_similarity(args: argparse.Namespace) -> int:
    from .embed import text_similarity

    params = parse_json(args.params, "--params (curation.text_similarity)", obj=True, empty={})
    prov = _prov("text_similarity", args, [args.captions, args.synsets], params, "curation.text_similarity")
    text_similarity(args.captions, args.synsets, params, args.out,
                    device=args.device, work_dir=args.work_dir, provenance=prov)
    return 0


def _cmd_clip_scores(args: argparse.Namespace) -> int:
    from .clip import clip_scores
    from .embed import pick_device

    params = parse_json(args.params, "--params (curation.clip)", obj=True, empty={})
    prov = _prov("clip_scores", args, [args.text_similarity, args.synsets], params, "curation.clip")
    clip_scores(args.text_similarity, args.synsets, params, args.out,
                device=pick_device(args.device), provenance=prov)
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    params = parse_json(args.params, "--params (curation)", obj=True, empty={})
    prov = _prov("select", args, [args.candidates, args.text_similarity, args.classes_file, args.clip_scores], params)
    if args.classes_file:
        from .published import published_select

        published_select(args.text_similarity, args.candidates, args.classes_file, params,
                         args.out_classes, args.out_selection, args.out_table, provenance=prov)
        return 0
    from .select import select

    clip_scores = None
    if args.clip_scores:
        from .clip import read_clip_scores

        clip_scores = read_clip_scores(args.clip_scores)
    select(args.text_similarity, args.candidates, params, args.out_classes,
           args.out_selection, args.out_table, provenance=prov, clip_scores=clip_scores)
    return 0
