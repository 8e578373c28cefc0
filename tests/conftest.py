"""Shared test fixtures.

``wordnet_root``: an NLTK data root holding WordNet 3.0 in ``corpora/wordnet``, provisioned
once per test session into a temporary directory by ``imagenot.wordnet.provision`` (from an
NLTK copy already on NLTK's data path, else Debian's ``wordnet-base`` +
``wordnet-sense-index``; the network is never used in tests). Any stage that needs WordNet
takes this fixture.

The ``curate_*`` fixtures below serve the curation tests only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))


# ---------------------------------------------------------------------------------------
# WordNet (used by several stages' tests)


@pytest.fixture(scope="session")
def wordnet_root(tmp_path_factory) -> Path:
    """NLTK data root with WordNet 3.0 at ``<root>/corpora/wordnet``."""
    from imagenot import wordnet

    root = tmp_path_factory.mktemp("nltk_data")
    wordnet.provision(root, download=False)
    return root


# ---------------------------------------------------------------------------------------
# curation


@pytest.fixture(scope="session")
def curate_reader(wordnet_root):
    """NLTK's WordNet reader on ``wordnet_root`` (loading the indices takes a few seconds)."""
    from imagenot import wordnet

    return wordnet.load(wordnet_root)


#: synsets of the hand-written test captions (NLTK names); ImageNet-1k's 1000 synsets and
#: all ancestors are added, so that steps 2 and 4 see the real WordNet structure.
CURATE_TEST_SYNSETS = [
    "kayak.n.01", "boat.n.01", "bagpipe.n.01", "hedgehog.n.02", "uke.n.01", "igloo.n.01",
    "snowman.n.01", "windmill.n.01", "windmill.n.02", "golden_retriever.n.01", "cat.n.01",
    "mouse.n.01", "goose.n.01", "hotdog.n.02", "artificial_intelligence.n.01", "category.n.01",
    "vitamin_a.n.01", "cafe.n.01", "governor_general.n.01", "potato.n.01", "city.n.01",
    "box.n.01", "friar's_lantern.n.01", "sea_lion.n.01", "accordion.n.01", "harmonica.n.01",
]


@pytest.fixture(scope="session")
def curate_tables(curate_reader):
    """(synsets, vocab) DataFrames for the test synsets + ImageNet-1k + their ancestors:
    the real builders on a WordNet subset (the whole of WordNet takes ~20 s)."""
    from imagenot.curate import filters, vocab
    from imagenot.wordnet import synset_from_wnid

    r = curate_reader
    seeds = [synset_from_wnid(r, w) for w in filters.imagenet_wnids()]
    seeds += [r.synset(n) for n in CURATE_TEST_SYNSETS] + r.synsets("ass", "n")
    synsets = vocab.build_synsets(r, seeds)
    voc = vocab.build_vocab(synsets, vocab.read_noun_exceptions(vocab.noun_exc_path(r)))
    return synsets, voc


@pytest.fixture(scope="session")
def curate_files(curate_tables, tmp_path_factory) -> dict:
    """The subset tables written as ``synsets.parquet`` and ``vocab.parquet``."""
    from imagenot.io import write_parquet

    synsets, voc = curate_tables
    d = tmp_path_factory.mktemp("curate_vocab")
    write_parquet(synsets, d / "synsets.parquet")
    write_parquet(voc, d / "vocab.parquet")
    return {"synsets": d / "synsets.parquet", "vocab": d / "vocab.parquet"}


@pytest.fixture(scope="session")
def curate_matcher(curate_tables):
    from imagenot.curate.match import NgramMatcher

    _, voc = curate_tables
    mapping: dict[str, list[str]] = {}
    for s, w in zip(voc["surface"], voc["wnid"]):
        mapping.setdefault(s, []).append(w)
    return NgramMatcher(mapping)


@pytest.fixture(scope="session")
def curate_column_matcher(curate_tables):
    """The workflow's vectorised matcher on the same vocabulary."""
    from imagenot.curate.match import ColumnMatcher

    _, voc = curate_tables
    mapping: dict[str, list[str]] = {}
    for s, w in zip(voc["surface"], voc["wnid"]):
        mapping.setdefault(s, []).append(w)
    return ColumnMatcher(mapping)


@pytest.fixture(scope="session")
def curate_names(curate_tables) -> dict:
    """wnid -> NLTK synset name, and back."""
    synsets, _ = curate_tables
    fwd = dict(zip(synsets["wnid"], synsets["name"]))
    return {**fwd, **{v: k for k, v in fwd.items()}}


@pytest.fixture
def imagenot_cli(monkeypatch):
    """The real ``imagenot`` entry point (it imports only the called command's module)."""
    from imagenot import cli

    return cli.main


# ---------------------------------------------------------------------------------------
# demo corpus, its server, download and split


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: a tiny demo corpus: 4 visual classes x 24 images at 32 px (>= 20, so the size filter keeps
#: them); a few seconds beside loading WordNet
DEMO_TEST_PARAMS = {"seed": 3, "n_parts": 2, "n_classes": 4, "images_per_class": 24, "image_size": 32,
                    "label_noise": 0.25}


@pytest.fixture(scope="session")
def demo_corpus(wordnet_root, tmp_path_factory) -> Path:
    """The demo corpus of ``DEMO_TEST_PARAMS``, its URLs on a free port (manifest params.port)."""
    from imagenot.corpus import demo

    out = tmp_path_factory.mktemp("demo") / "corpus"
    demo.generate(wordnet_root, out, {**DEMO_TEST_PARAMS, "port": free_port()})
    return out


# ---------------------------------------------------------------------------------------
# a small trained model (robustness and transfer tests)

#: mobilenet_v3_small at 32 px (batch-norm layers, a multi-layer classifier), 2 epochs
SMALL_TRAINED_RECIPE = {
    "arch": "mobilenet_v3_small", "image_size": 32, "epochs": 2, "batch_size": 16, "optimizer": "sgd",
    "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4, "lr_scheduler": "cosine", "lr_step_size": 30,
    "lr_gamma": 0.1, "lr_warmup_epochs": 0, "lr_warmup_decay": 0.1, "lr_min": 0.0, "label_smoothing": 0.0,
    "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "ra_reps": 1, "ema_decay": None, "ema_steps": 32,
    "clip_grad_norm": None, "aux_loss_weight": 0.0,
}


@pytest.fixture(scope="session")
def small_trained(tmp_path_factory):
    """(dataset dir, model.pt): ``imagenot train`` of SMALL_TRAINED_RECIPE on the 4-class
    colour-pattern dataset (20 test images and one corrupt test sample)."""
    from imagenot import train
    from test_data import make_dataset_dir

    root = tmp_path_factory.mktemp("small_trained")
    ds = make_dataset_dir(root / "ds", per_class={"train": 8, "val": 2, "test": 5}, seed=2, corrupt={"test": 1})
    params = {"device": "cpu", "num_workers": 0, "threads": 1, "patience": 10, "amp": True}
    train.train("mobilenet_v3_small", SMALL_TRAINED_RECIPE, ds, 0, params, root / "train")
    return ds, root / "train" / "model.pt"
