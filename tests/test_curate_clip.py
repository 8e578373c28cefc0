"""The open_clip code path of step 8 with a randomly initialised tiny open_clip model
(no weights, no network): shapes, batching, normalisation and the alignment of LAION's
image embeddings with metadata rows. Nothing here says anything about similarity quality."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import clip
from imagenot.curate.embed import TEXT_SIM_SCHEMA
from imagenot.io import InputError

open_clip = pytest.importorskip("open_clip")

TINY = "imagenot-test-tiny"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 32-d open_clip model with one-layer towers, registered under a test name."""
    import torch

    d = tmp_path_factory.mktemp("openclip")
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    (d / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / f"{TINY}.json")
    torch.manual_seed(0)
    return clip.load_open_clip(TINY, None, "cpu")


def test_text_and_image_embeddings_shapes_batching_norms(tiny_model):
    from PIL import Image

    model, preprocess, tokenizer = tiny_model
    texts = clip.class_prompts([["golden_retriever", "x"], ["kayak"], ["igloo"], ["snowman"], ["cat"]])
    assert texts[0] == "a photo of a golden retriever."
    a = clip.encode_texts(model, tokenizer, texts, batch_size=2)
    b = clip.encode_texts(model, tokenizer, texts, batch_size=5)
    assert a.shape == (5, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batching does not change the result
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]
    e = clip.encode_images(model, preprocess, images, batch_size=2)
    assert e.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(e, clip.encode_images(model, preprocess, images, batch_size=3), atol=1e-5)


def _embeddings(d, parts):
    """LAION-style img_emb files: float16 rows aligned with the metadata parts."""
    rng = np.random.default_rng(1)
    arrs = {}
    for part, rows in parts.items():
        arrs[part] = (rng.normal(size=(rows, 32)) * 3).astype(np.float16)
        np.save(d / f"img_emb_{part}.npy", arrs[part])
    return arrs


def test_read_aligned_embeddings(tmp_path):
    arrs = _embeddings(tmp_path, {"00000": 5, "00001": 4})
    keys = ["laion/00001/3", "laion/00000/0", "laion/00000/4", "laion/00001/0", "laion/00000/4"]
    got = clip.read_aligned_embeddings(keys, str(tmp_path / "img_emb_{part}.npy"))
    assert got.shape == (5, 32)
    for k, row in zip(keys, got):
        _, part, r = k.split("/")
        want = arrs[part][int(r)].astype(np.float32)
        np.testing.assert_allclose(row, want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="00000.*row 9.*not aligned"):
        clip.read_aligned_embeddings(["laion/00000/9"], str(tmp_path / "img_emb_{part}.npy"))
    with pytest.raises(InputError, match="img_emb_00007.npy"):
        clip.read_aligned_embeddings(["laion/00007/0"], str(tmp_path / "img_emb_{part}.npy"))
    with pytest.raises(InputError, match="SUBSET/PART/ROW"):
        clip.read_aligned_embeddings(["nokey"], str(tmp_path / "img_emb_{part}.npy"))


def test_clip_scores_from_aligned_embeddings(tmp_path, tiny_model, curate_files, curate_names):
    arrs = _embeddings(tmp_path, {"00000": 6})
    kayak, snowman = curate_names["kayak.n.01"], curate_names["snowman.n.01"]
    rows = [{"key": f"demo/00000/{i}", "url": f"u{i}", "text": "t", "similarity": 0.3,
             "wnid": kayak if i < 4 else snowman, "text_sim": 0.5} for i in (0, 2, 3, 5, 1)]
    pq.write_table(pa.Table.from_pylist(rows, schema=TEXT_SIM_SCHEMA), tmp_path / "ts.parquet")
    params = {"model": TINY, "pretrained": None, "image_embeddings": str(tmp_path / "img_emb_{part}.npy"),
              "batch_size": 1}
    rep = clip.clip_scores(tmp_path / "ts.parquet", curate_files["synsets"], params, tmp_path / "cs.parquet",
                           model=tiny_model, provenance={"step": "clip_scores"})
    assert rep == {**rep, "captions": 5, "classes": 2, "dim": 32}
    got = clip.read_clip_scores(tmp_path / "cs.parquet").set_index("key")["clip_sim"]
    model, _, tok = tiny_model
    text = clip.encode_texts(model, tok, ["a photo of a kayak.", "a photo of a snowman."])
    for r in rows:
        i = int(r["key"].rsplit("/", 1)[1])
        img = arrs["00000"][i].astype(np.float32)
        want = float(img @ text[0 if r["wnid"] == kayak else 1] / np.linalg.norm(img))
        assert got[r["key"]] == pytest.approx(want, abs=1e-5)
    assert (got.abs() <= 1 + 1e-6).all()
    # embeddings of another CLIP model (other dimension) are an error naming both
    np.save(tmp_path / "other_00000.npy", np.ones((6, 768), np.float16))
    with pytest.raises(InputError, match="dimension 768.*32"):
        clip.clip_scores(tmp_path / "ts.parquet", curate_files["synsets"],
                         {**params, "image_embeddings": str(tmp_path / "other_{part}.npy")}, tmp_path / "x.parquet",
                         model=tiny_model)
    with pytest.raises(InputError, match="image_embeddings"):
        clip.clip_scores(tmp_path / "ts.parquet", curate_files["synsets"], {"model": TINY}, tmp_path / "x.parquet",
                         model=tiny_model)
    assert not (tmp_path / "x.parquet").exists()


def test_select_uses_clip_scores(tmp_path):
    from imagenot.curate.select import select

    df = pd.DataFrame({"key": ["a", "b"], "clip_sim": [0.1, 0.2]})
    with pytest.raises(InputError, match="CLIP image embeddings"):
        select(tmp_path / "none.parquet", tmp_path / "none.parquet",
               {"n_classes": 2, "images_per_class": 3, "clip": {"source": "open_clip"}},
               tmp_path / "c.parquet", tmp_path / "s.parquet", tmp_path / "t.csv")
    # with scores the open_clip source gets as far as reading its inputs
    with pytest.raises(InputError, match="none.parquet"):
        select(tmp_path / "none.parquet", tmp_path / "none.parquet",
               {"n_classes": 2, "images_per_class": 3, "clip": {"source": "open_clip"}},
               tmp_path / "c.parquet", tmp_path / "s.parquet", tmp_path / "t.csv", clip_scores=df)
