"""WordNet 3.0 provisioning: NLTK copy, Debian files, atomic layout, clear errors."""

from __future__ import annotations

import shutil
import zipfile

import nltk
import pytest

from imagenot import wordnet
from imagenot.io import InputError


def test_fixture_corpus_is_wordnet_30(wordnet_root, curate_reader):
    d = wordnet.corpus_dir(wordnet_root)
    assert all((d / f).is_file() for f in wordnet.NLTK_FILES)
    assert curate_reader.get_version() == "3.0"
    assert str(wordnet_root.resolve()) in [str(p) for p in nltk.data.path]
    dog = curate_reader.synset("dog.n.01")
    assert wordnet.wnid(dog) == "n02084071"  # ImageNet's wnid for dog
    assert wordnet.synset_from_wnid(curate_reader, "n02084071") == dog
    assert dog.lexname() == "noun.animal"  # lexnames file is right
    # no temporary leftovers next to the corpus
    assert [p.name for p in d.parent.iterdir()] == ["wordnet"]


def test_lexnames_from_manpage_match_builtin_table():
    text = wordnet.lexnames_text()
    lines = [line.split("\t") for line in text.splitlines()]
    assert len(lines) == 45
    assert [name for _, name, _ in lines] == list(wordnet.LEXNAMES)
    assert lines[5] == ["05", "noun.animal", "1"]
    assert lines[44] == ["44", "adj.ppl", "3"]
    # the built-in table when the man page is missing
    assert wordnet.lexnames_text(manpage=wordnet.Path("/nonexistent.gz")) == text


def test_wnid_helpers():
    assert wordnet.parse_wnid("n02084071") == ("n", 2084071)
    for bad in ("02084071", "n2084071", "x02084071", None, "n020840711"):
        with pytest.raises(ValueError):
            wordnet.parse_wnid(bad)


def test_provision_keeps_existing_and_copies_from_nltk_data(wordnet_root, tmp_path, monkeypatch):
    # existing complete corpus: kept as is
    before = (wordnet.corpus_dir(wordnet_root) / "lexnames").stat().st_mtime_ns
    assert wordnet.provision(wordnet_root, download=False) == wordnet.corpus_dir(wordnet_root)
    assert (wordnet.corpus_dir(wordnet_root) / "lexnames").stat().st_mtime_ns == before

    # (a) an NLTK corpus on nltk.data.path is used before Debian's files
    monkeypatch.setattr(nltk.data, "path", [str(wordnet_root)])
    new = tmp_path / "copy"
    out = wordnet.provision(new, download=False, debian_dir=tmp_path / "no-debian")
    assert wordnet.is_complete(out)

    # (a) also from wordnet.zip, the layout nltk.download leaves
    zroot = tmp_path / "zipped"
    (zroot / "corpora").mkdir(parents=True)
    with zipfile.ZipFile(zroot / "corpora" / "wordnet.zip", "w") as zf:
        for f in wordnet.corpus_dir(wordnet_root).iterdir():
            zf.write(f, f"wordnet/{f.name}")
    monkeypatch.setattr(nltk.data, "path", [str(zroot)])
    out = wordnet.provision(tmp_path / "fromzip", download=False, debian_dir=tmp_path / "no-debian")
    assert wordnet.is_complete(out)


def test_provision_rejects_other_versions_and_incomplete_dirs(wordnet_root, tmp_path, monkeypatch):
    fake = tmp_path / "wn31"
    shutil.copytree(wordnet.corpus_dir(wordnet_root), fake)
    adj = (fake / "data.adj").read_text(encoding="latin-1").replace("WordNet 3.0 Copyright", "WordNet 3.1 Copyright")
    (fake / "data.adj").write_text(adj, encoding="latin-1")
    monkeypatch.setattr(nltk.data, "path", [])
    with pytest.raises(InputError) as e:
        wordnet.provision(tmp_path / "r", download=False, debian_dir=fake)
    assert "not 3.0" in str(e.value)

    broken = tmp_path / "incomplete"
    broken.mkdir()
    shutil.copy(wordnet.corpus_dir(wordnet_root) / "data.adj", broken)
    with pytest.raises(InputError) as e:
        wordnet.provision(tmp_path / "r", download=False, debian_dir=broken)
    msg = str(e.value)
    # one error listing the three ways to provide WordNet
    assert "lacks" in msg and "nltk.download" in msg
    assert "apt-get install wordnet-base wordnet-sense-index" in msg
    assert "nltk_data" in msg or "NLTK" in msg
    assert not (tmp_path / "r" / "corpora" / "wordnet").exists()
    assert list((tmp_path / "r" / "corpora").iterdir()) == []  # nothing half-built left


def test_provision_download_fails_fast_offline(tmp_path, monkeypatch):
    import socket
    import time

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(nltk.data, "path", [])
    t0 = time.time()
    with pytest.raises(InputError) as e:
        wordnet.provision(tmp_path / "r", download=True, debian_dir=tmp_path / "none")
    assert time.time() - t0 < 5
    assert "unreachable" in str(e.value)


def test_load_refuses_missing_corpus(tmp_path):
    with pytest.raises(InputError, match="imagenot wordnet --root"):
        wordnet.load(tmp_path)


def test_wordnet_cli(imagenot_cli, wordnet_root, capsys):
    assert imagenot_cli(["wordnet", "--root", str(wordnet_root), "--no-download"]) == 0
    assert "WordNet 3.0" in capsys.readouterr().out
