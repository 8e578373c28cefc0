"""The embedded demo corpus: LAION-style metadata written from real WordNet lemmas, with
procedurally rendered images behind the URLs.

``imagenot demo-corpus --wordnet-root R --out-dir D --params JSON(corpus.demo)`` writes

- ``D/metadata/part-00000.parquet ...``: LAION metadata columns ``SAMPLE_ID, URL, TEXT,
  WIDTH, HEIGHT, similarity, punsafe, pwatermark, NSFW, LICENSE`` (rows shuffled over
  ``n_parts`` parts, row groups of 256 rows);
- ``D/images/NAME.jpg``: the images the URLs ``http://127.0.0.1:{port}/images/NAME.jpg``
  point to (served by ``imagenot serve-demo --root D``);
- ``D/manifest.json``: parameters, the chosen synsets and why each is there, and the files
  that are missing (404), corrupt (invalid JPEG bytes) or served with ``X-Robots-Tag: noai``;
- ``D/truth.parquet``: per row, what the caption names and what the image shows (for tests
  and for measuring how clean the curated dataset is; the curation never reads it).

Synsets are chosen from WordNet with the seed:

- ``n_classes`` *visual classes*: monosemous leaf nouns (artifacts, animals, plants, food,
  natural objects) outside ImageNet-1k whose lemma and gloss the NSFW text classifier
  (alt-profanity-check) does not flag; at least one with an irregular plural from
  ``noun.exc`` and one multi-word lemma when the seed's draw has them. Each gets
  ``images_per_class`` captions and images with a visual signature (shape, texture, hue,
  count) drawn at a random position, scale and rotation over a cluttered background;
  ``label_noise`` of them show another class's signature or only clutter;
- bait for every curation filter, each with its own images: captions of ImageNet-1k
  classes (step 2), synsets with fewer than 20 captions (step 3), hypernyms of visual
  classes (both present, so that step 4 keeps only the leaf), synsets the NSFW classifier
  flags (step 5), captions naming two visual classes (step 6), synsets named only in
  unrelated contexts and low-relevance captions (step 7), plus a few rows with
  ``punsafe > 0.5`` and rows without a caption.

Captions mix singular, plural (regular and irregular) and synonym forms, case and
punctuation, with filler words that are verified not to be WordNet nouns, so a caption
names exactly the synsets it is meant to name; some paraphrase the gloss.

``similarity`` is a stand-in for LAION's CLIP caption-image similarity: it is higher when
the image shows the class the caption names (plus a per-class offset and noise), in the
range LAION-2B-en has (>= 0.28 for most rows). It is not computed by a model.

Everything is seeded: the same parameters give the same bytes.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError, atomic_dir, check_keys, parse_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

DEFAULTS = {
    "seed": 0,
    "n_parts": 2,
    "n_classes": 14,
    "images_per_class": 110,
    "image_size": 64,
    "label_noise": 0.15,
    "port": 8731,
}
_INT_RANGES = {"seed": (None, None), "n_parts": (1, None), "n_classes": (2, None),
               "images_per_class": (4, None), "image_size": (16, 4096), "port": (1024, 65535)}

#: captions per distractor synset: above the default min_captions_per_synset (20), so the
#: filter step meant for it (not the size filter) is the one that removes it
DISTRACTOR_CAPTIONS = 25
RARE_CAPTIONS = (3, 12)
N_IMAGENET, N_NSFW, N_RARE, N_LOWREL, N_ANCESTORS = 3, 2, 3, 3, 2
#: synsets that a gloss paraphrase names in passing stay below this many captions
INCIDENTAL_CAP = 15
ROW_GROUP_SIZE = 256

TRUE_CLASS_LEXNAMES = ("noun.artifact", "noun.animal", "noun.plant", "noun.food", "noun.object")

# Filler vocabulary. Each word is checked against WordNet at run time and dropped when it
# could name a noun (``_Lexicon.maybe_noun``); what remains names nothing.
_ADJECTIVES = """beautiful cheap handmade unique amazing rustic modern elegant gorgeous stunning
lovely colorful adorable rare cute tiny huge fresh awesome fantastic wonderful exquisite delicate
bright shiny detailed realistic authentic vibrant charming pretty fancy ornate sleek tidy wooden
golden vintage retro small large little glittering sparkling gleaming weathered faded dusty rusty
polished painted carved woven knitted embroidered lovable magnificent splendid striking graceful
handcrafted miniature oversized cozy quirky whimsical majestic""".split()
_PARTICIPLES = """featuring showing isolated spotted captured photographed displayed framed pictured
drawn sketched rendered found seen shown made crafted printed posted shared loved liked
arranged""".split()
_ADVERBS = """very really beautifully freshly carefully nearly simply truly absolutely incredibly
extremely quite rather totally highly""".split()
_CONNECTORS = "and with of for from by on the my our your this".split()
#: English function words that WordNet also lists as nouns ("a" is vitamin A, "in" is inch,
#: "it" information technology...). Glosses are full of them; any usable caption matcher
#: ignores them, so gloss paraphrases may contain them (filler and templates never do).
_STOPWORDS = frozenset("""a an i in it at on one is be as or us no do go me my we he so up us
am are was were has had have us two three four five six seven eight nine ten""".split())
_CONSONANTS = "bcdfgklmnprstvz"
_VOWELS = "aeiou"

_REGULAR_TEMPLATES = [
    "{A} {L}",
    "{A} {A} {L}",
    "{L} {P} {R}",
    "{R} {A} {L}!",
    "{L} - {A} and {A}",
    "{L}, {A}, {P}",
    "{P} {L} ({A})",
    "my {A} {L}",
    "{L}: {A} & {A}",
    "the {A} {L}...",
    "{A} {L} | {C} {C}",
    "#{L} #{A} #{P}",
    "{L} {P} by {C}",
    "{A} {L} {P} with {A} {A}",
    '"{L}" {A} {C}',
]
_PARAPHRASE_TEMPLATES = ["{L}: {G}", "{L} - {G}", "{A} {L}, {G}", "{G} ({L})"]
_TWO_TEMPLATES = ["{L} and {L2}", "{A} {L} with {A} {L2}", "{L2}, {L} {P}", "{L} & {L2} {R} {A}"]

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "crescent")
TEXTURES = ("solid", "stripes", "dots", "checker")

_MORPHY_SUFFIXES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                    ("shes", "sh"), ("men", "man"), ("ies", "y"), ("es", ""))
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Lower-case alphanumeric tokens joined by one space (how captions are matched)."""
    return " ".join(_TOKEN_RE.findall(text.lower()))


# ---------------------------------------------------------------------------------------
# parameters


def parse_params(params) -> dict:
    """The corpus.demo config section (a JSON string or dict) with defaults filled in."""
    params = parse_json(params, "--params (config corpus.demo)", obj=True)
    check_keys(params, DEFAULTS, "--params (config corpus.demo)")
    out = {**DEFAULTS, **params}
    for key, (lo, hi) in _INT_RANGES.items():
        v = out[key]
        if not isinstance(v, int) or isinstance(v, bool):
            raise InputError(f"--params (config corpus.demo.{key}): expected an integer, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise InputError(f"--params (config corpus.demo.{key}): {v} is outside [{lo}, {hi}]")
    noise = out["label_noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1:
        raise InputError(f"--params (config corpus.demo.label_noise): expected a fraction in [0, 1], got {noise!r}")
    out["label_noise"] = float(noise)
    return out


# ---------------------------------------------------------------------------------------
# WordNet lexicon: which synsets a piece of text names


def load_wordnet(root):
    """NLTK's WordNet 3.0 reader on ``root`` (clear error when it is missing)."""
    from .. import wordnet

    directory = wordnet.corpus_dir(root)
    if not directory.is_dir():
        raise InputError(f"{directory}: WordNet not found (config key wordnet.root = {root}); "
                         f"run `imagenot wordnet --root {root}` first")
    return wordnet.load(root)


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 wnids, from the list timm ships (read without importing timm,
    which would import torch)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info" / "imagenet_synsets.txt"
    if path is None or not path.is_file():
        raise InputError("timm/data/_info/imagenet_synsets.txt (the ImageNet-1k class list) not found: "
                         "install timm; it keeps demo classes out of ImageNet")
    wnids = path.read_text().split()
    if len(wnids) != 1000:
        raise InputError(f"{path}: expected 1000 wnids, found {len(wnids)}")
    return wnids


class _Lexicon:
    """Noun surfaces of WordNet, normalised like caption text, and what an n-gram names.

    ``names(text)`` is deliberately broad (every n-gram up to 5 tokens, overlapping, all
    senses, singular, regular and irregular plurals) so that a caption it accepts names
    nothing but the intended synsets under any reasonable matcher.
    """

    MAX_N = 5

    def __init__(self, wn):
        from ..wordnet import wnid

        self.wn = wn
        self.wnid = wnid
        self.lemma_names = sorted(wn.all_lemma_names(pos="n"))
        self.by_surface: dict[str, list[str]] = {}
        for name in self.lemma_names:
            self.by_surface.setdefault(normalize(name.replace("_", " ")), []).append(name)
        self.exc_forms: dict[str, list[str]] = {}  # irregular plural -> base lemmas
        self.irregular: dict[str, list[str]] = {}  # base lemma -> irregular plurals
        with wn.open("noun.exc") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 2:
                    continue
                form, bases = parts[0], parts[1:]
                self.exc_forms.setdefault(normalize(form.replace("_", " ")), []).extend(bases)
                for b in bases:
                    self.irregular.setdefault(b, []).append(form)
        self._cache: dict[str, frozenset] = {}

    def maybe_noun(self, g: str) -> bool:
        """Cheap superset test: could normalised n-gram ``g`` name a noun synset?"""
        if g in self.by_surface or g in self.exc_forms:
            return True
        for suffix, rep in _MORPHY_SUFFIXES:
            if g.endswith(suffix) and g[: len(g) - len(suffix)] + rep in self.by_surface:
                return True
        return False

    def ngram_wnids(self, g: str) -> frozenset:
        hit = self._cache.get(g)
        if hit is not None:
            return hit
        out: set[str] = set()
        if self.maybe_noun(g):
            names = list(self.by_surface.get(g, ()))
            names += self.exc_forms.get(g, [])
            for suffix, rep in _MORPHY_SUFFIXES:
                if g.endswith(suffix):
                    names += self.by_surface.get(g[: len(g) - len(suffix)] + rep, [])
            for name in names:
                for s in self.wn.synsets(name, pos="n"):
                    out.add(self.wnid(s))
        hit = self._cache[g] = frozenset(out)
        return hit

    def names(self, text: str, skip_stopwords: bool = False) -> set[str]:
        toks = _TOKEN_RE.findall(text.lower())
        out: set[str] = set()
        for i in range(len(toks)):
            for n in range(1, min(self.MAX_N, len(toks) - i) + 1):
                if n == 1 and skip_stopwords and toks[i] in _STOPWORDS:
                    continue
                out |= self.ngram_wnids(" ".join(toks[i:i + n]))
        return out


# ---------------------------------------------------------------------------------------
# choosing synsets


@dataclass
class _Synset:
    wnid: str
    name: str
    lemma: str  # the lemma captions use (underscores as in WordNet)
    gloss: str
    group: str  # class | imagenet | nsfw | rare | ancestor | low_relevance
    synonyms: list[str] = field(default_factory=list)
    plurals: list[str] = field(default_factory=list)  # regular plurals that name only it
    irregular: list[str] = field(default_factory=list)  # from noun.exc, naming only it
    n_captions: int = 0
    why: str = ""
    descendant: str | None = None  # for ancestors: the visual class below it


def _regular_plurals(word: str) -> list[str]:
    # written apart from curate.vocab.pluralize on purpose: the captions generated here test
    # that matcher, so a bug in its plural rules must not be copied into the test data
    if len(word) < 2 or not word.isalpha():
        return []
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return [word + "es"]
    if word.endswith("y") and word[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    if word.endswith("o") and word[-2] not in "aeiou":
        return [word + "s", word + "es"]
    return [word + "s"]


class _Chooser:
    def __init__(self, lex: _Lexicon, rng: np.random.Generator, seed: int):
        import profanity_check

        self.seed = seed
        self.lex = lex
        self.wn = lex.wn
        self.rng = rng
        self.predict = profanity_check.predict_prob
        self.imagenet = set(imagenet_wnids())
        from ..wordnet import synset_from_wnid

        self.imagenet_synsets = [synset_from_wnid(self.wn, w) for w in sorted(self.imagenet)]
        self.imagenet_surfaces = {normalize(lem.replace("_", " "))
                                  for s in self.imagenet_synsets for lem in s.lemma_names()}
        t0 = time.time()
        names = lex.lemma_names
        self.lemma_prob = dict(zip(names, self.predict([n.replace("_", " ") for n in names])))
        log.debug("profanity scores for %d lemmas in %.1f s", len(names), time.time() - t0)
        self.used: set[str] = set()

    # -- predicates

    def only_names(self, surface: str, wnid: str) -> bool:
        return self.lex.names(surface) == {wnid}

    def monosemous(self, lemma: str):
        ss = self.wn.synsets(lemma, pos="n")
        if len(ss) != 1 or lemma not in ss[0].lemma_names():
            return None
        return ss[0]

    def texts(self, s, lemma: str) -> list[str]:
        """The strings an NSFW text filter might score for a synset."""
        lem = lemma.replace("_", " ")
        lemmas = ", ".join(x.replace("_", " ") for x in s.lemma_names())
        return [lem, f"{lem} {s.definition()}", f"{lemmas}: {s.definition()}", s.definition()]

    def usable_lemma(self, lemma: str, multiword: bool) -> bool:
        if not re.fullmatch(r"[a-z]+(_[a-z]+)*", lemma) or not 4 <= len(lemma) <= 24:
            return False
        parts = lemma.split("_")
        if multiword:
            # every word on its own names nothing, so no matcher can split the lemma
            return len(parts) == 2 and all(len(p) >= 2 and not self.lex.maybe_noun(p) for p in parts)
        return len(parts) == 1

    def base_ok(self, s, lemma: str) -> bool:
        w = self.lex.wnid(s)
        return (w not in self.imagenet and w not in self.used
                and not any(normalize(x.replace("_", " ")) in self.imagenet_surfaces for x in s.lemma_names())
                and self.only_names(normalize(lemma.replace("_", " ")), w))

    def is_leaf(self, s) -> bool:
        return not s.hyponyms() and not s.instance_hyponyms() and not s.instance_hypernyms()

    def make(self, s, lemma: str, group: str, why: str) -> _Synset:
        w = self.lex.wnid(s)
        self.used.add(w)
        surf = normalize(lemma.replace("_", " "))
        head, _, last = surf.rpartition(" ")
        plurals = [f"{head} {p}".strip() for p in _regular_plurals(last)]
        plurals = [p for p in plurals if self.only_names(p, w)]
        irregular = [normalize(f.replace("_", " ")) for f in self.lex.irregular.get(lemma, [])]
        irregular = [f for f in irregular if f not in plurals and self.only_names(f, w)]
        synonyms = [x for x in s.lemma_names() if x != lemma and re.fullmatch(r"[a-z]+", x)
                    and self.only_names(x, w) and self.lemma_prob.get(x, 1.0) < 0.3]
        return _Synset(wnid=w, name=s.name(), lemma=lemma, gloss=s.definition(), group=group,
                       synonyms=synonyms, plurals=plurals, irregular=irregular, why=why)

    # -- the draw

    def choose(self, n_classes: int) -> tuple[list[_Synset], list[_Synset]]:
        lex = self.lex
        names = lex.lemma_names
        order = self.rng.permutation(len(names))
        want = {"single": n_classes + N_RARE + N_LOWREL + 8, "irregular": 2, "multi": 2, "nsfw": N_NSFW * 4}
        pools: dict[str, list] = {k: [] for k in want}
        for i in order:
            if all(len(pools[k]) >= want[k] for k in want):
                break
            lemma = names[i]
            prob = self.lemma_prob[lemma]
            multi = "_" in lemma
            if not self.usable_lemma(lemma, multi):
                continue
            if prob >= 0.6:
                kind = "nsfw"
            elif prob >= 0.3:
                continue
            elif multi:
                kind = "multi"
            elif lemma in lex.irregular:
                kind = "irregular"
            else:
                kind = "single"
            if len(pools[kind]) >= want[kind]:
                continue
            s = self.monosemous(lemma)
            if s is None or not self.is_leaf(s) or not self.base_ok(s, lemma):
                continue
            if kind != "nsfw" and s.lexname() not in TRUE_CLASS_LEXNAMES:
                continue
            if kind == "irregular" and not any(
                    self.only_names(normalize(f.replace("_", " ")), lex.wnid(s)) for f in lex.irregular[lemma]):
                kind = "single"  # its noun.exc plurals also name other synsets
                if len(pools[kind]) >= want[kind]:
                    continue
            if any(lemma == p[1] for p in pools[kind]):
                continue
            pools[kind].append((s, lemma))
        # the NSFW text classifier on lemma + gloss: visual classes and other distractors must
        # be clearly clean, NSFW bait clearly flagged, under every way of asking
        scored = {}
        for kind, items in pools.items():
            if items:
                texts = [t for s, lem in items for t in self.texts(s, lem)]
                probs = np.asarray(self.predict(texts)).reshape(len(items), -1)
                scored[kind] = [(s, lem, p) for (s, lem), p in zip(items, probs)]
        clean = {k: [(s, lem) for s, lem, p in v if p.max() < 0.3] for k, v in scored.items() if k != "nsfw"}
        # the gloss alone may be harmless; the lemma and lemma + gloss must be flagged
        nsfw = [(s, lem) for s, lem, p in scored.get("nsfw", []) if min(p[0], p[1], p[2]) >= 0.5]

        classes: list[_Synset] = []
        special = clean.get("irregular", [])[: 2 if n_classes >= 6 else 1]
        special += clean.get("multi", [])[: 1]
        singles = clean.get("single", [])
        for s, lem in special + singles:
            if len(classes) >= n_classes:
                break
            if self.lex.wnid(s) in self.used:
                continue
            why = "visual class"
            if lem in lex.irregular:
                why += " (irregular plural in noun.exc)"
            if "_" in lem:
                why += " (multi-word lemma)"
            classes.append(self.make(s, lem, "class", why))
        if len(classes) < n_classes:
            raise InputError(f"--params (config corpus.demo.n_classes): WordNet gave only {len(classes)} "
                             f"usable visual classes for seed {self.seed}, need {n_classes}")

        distractors: list[_Synset] = []
        rest = [(s, lem) for s, lem in singles if self.lex.wnid(s) not in self.used]
        for s, lem in rest[:N_RARE]:
            distractors.append(self.make(s, lem, "rare", "too few captions (step 3)"))
        for s, lem in rest[N_RARE:N_RARE + N_LOWREL]:
            distractors.append(self.make(s, lem, "low_relevance",
                                         "named only in unrelated contexts (step 7 text similarity)"))
        for s, lem in nsfw[:N_NSFW]:
            distractors.append(self.make(s, lem, "nsfw", "flagged by the NSFW text classifier (step 5)"))
        distractors += self._imagenet()
        distractors += self._ancestors(classes)
        return classes, distractors

    def _imagenet(self) -> list[_Synset]:
        out = []
        for j in self.rng.permutation(len(self.imagenet_synsets)):
            if len(out) >= N_IMAGENET:
                break
            s = self.imagenet_synsets[j]
            for lem in s.lemma_names():
                if (re.fullmatch(r"[a-z]{4,14}", lem) and self.monosemous(lem) is not None
                        and self.only_names(lem, self.lex.wnid(s)) and self.lemma_prob.get(lem, 1) < 0.3):
                    out.append(self.make(s, lem, "imagenet", "an ImageNet-1k class (step 2)"))
                    break
        return out

    def _ancestors(self, classes: list[_Synset]) -> list[_Synset]:
        from ..wordnet import synset_from_wnid

        out = []
        for c in classes:
            if len(out) >= N_ANCESTORS:
                break
            s = synset_from_wnid(self.wn, c.wnid)
            frontier, found = [s], None
            for _ in range(4):  # up to 4 links above the class
                frontier = [h for f in frontier for h in f.hypernyms()]
                for h in frontier:
                    w = self.lex.wnid(h)
                    if w in self.imagenet or w in self.used:
                        continue
                    for lem in h.lemma_names():
                        if (self.usable_lemma(lem, False) and self.monosemous(lem) is not None
                                and self.base_ok(h, lem) and self.lemma_prob.get(lem, 1) < 0.3
                                and max(self.predict(self.texts(h, lem))) < 0.3):
                            found = (h, lem)
                            break
                    if found:
                        break
                if found:
                    break
            if found:
                a = self.make(found[0], found[1], "ancestor",
                              f"hypernym of visual class {c.name} (step 4 keeps only the leaf)")
                a.descendant = c.wnid
                out.append(a)
        return out


# ---------------------------------------------------------------------------------------
# captions


class _CaptionWriter:
    def __init__(self, lex: _Lexicon, rng: np.random.Generator, designed: set[str]):
        self.lex = lex
        self.rng = rng
        self.designed = designed
        self.incidental: dict[str, int] = {}
        #: visual class -> its hypernym bait synsets, which its gloss paraphrases may name
        self.ancestors_of: dict[str, frozenset] = {}
        self.pools = {
            "A": self._clean(_ADJECTIVES),
            "P": self._clean(_PARTICIPLES),
            "R": self._clean(_ADVERBS),
        }
        self.connectors = set(self._clean(_CONNECTORS))
        for k, v in self.pools.items():
            if len(v) < 5:
                raise RuntimeError(f"demo corpus: WordNet left only {len(v)} filler words of kind {k}")
        self.codes = self._make_codes(60)

    def _clean(self, words):
        return [w for w in words if not any(self.lex.maybe_noun(t) for t in normalize(w).split())]

    def _make_codes(self, n):
        out = []
        while len(out) < n:
            k = int(self.rng.integers(2, 4))
            word = "".join(self.rng.choice(list(_CONSONANTS)) + self.rng.choice(list(_VOWELS)) for _ in range(k))
            word += self.rng.choice(["", "x", "k", "v", "z"])
            if not self.lex.maybe_noun(word) and word not in out:
                out.append(word)
        return out

    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def lemma_form(self, s: _Synset, kind: str) -> str:
        """A surface of ``s``: kind is singular / plural / irregular / synonym."""
        if kind == "plural" and s.plurals:
            text = self._pick(s.plurals)
        elif kind == "irregular" and s.irregular:
            text = self._pick(s.irregular)
        elif kind == "synonym" and s.synonyms:
            text = self._pick(s.synonyms).replace("_", " ")
        else:
            text = s.lemma.replace("_", " ")
        if " " in text and self.rng.random() < 0.3:
            text = text.replace(" ", "-")
        style = self.rng.random()
        if style < 0.3:
            text = text.title()
        elif style < 0.4:
            text = text.upper()
        elif style < 0.55:
            text = text[:1].upper() + text[1:]
        return text

    def _fill(self, template: str, slots: dict[str, str]) -> str:
        out = []
        i = 0
        while i < len(template):
            if template[i] == "{":
                j = template.index("}", i)
                key = template[i + 1:j]
                if key in slots:
                    out.append(slots[key])
                elif key == "C":
                    out.append(self._pick(self.codes))
                else:
                    out.append(self._pick(self.pools[key]))
                i = j + 1
            else:
                out.append(template[i])
                i += 1
        text = "".join(out)
        if self.rng.random() < 0.05:
            text = text.upper()
        return text

    def _lowrel_template(self) -> str:
        """The lemma among 15-20 meaningless tokens: a caption that names the synset but
        says nothing about it (its text similarity to the gloss is low)."""
        n = int(self.rng.integers(15, 21))
        at = int(self.rng.integers(n + 1))
        parts = ["{C}"] * n
        parts.insert(at, "{L}")
        out = parts[0]
        for p in parts[1:]:
            out += self._pick([" ", " ", " ", " #", "-", " / ", ", "]) + p
        return out

    def _accept(self, text: str, expected: set[str], budget: bool, allowed: frozenset = frozenset()) -> bool:
        named = self.lex.names(text, skip_stopwords=budget)
        if not expected <= named:
            return False
        extra = named - expected - allowed
        if not extra:
            return True
        if not budget or extra & self.designed:
            return False
        if any(self.incidental.get(w, 0) + 1 >= INCIDENTAL_CAP for w in extra):
            return False
        for w in extra:
            self.incidental[w] = self.incidental.get(w, 0) + 1
        return True

    def designed_named(self, text: str) -> list[str]:
        return sorted(self.lex.names(text, skip_stopwords=True) & self.designed)

    def caption(self, kind: str, s: _Synset, partner: _Synset | None = None) -> tuple[str, str] | None:
        """(caption, form) of the given kind; None when no acceptable caption was found."""
        for _ in range(40):
            u = self.rng.random()
            form = ("irregular" if u < 0.2 and s.irregular else "plural" if u < 0.45 and s.plurals
                    else "synonym" if u < 0.52 and s.synonyms else "singular")
            slots = {"L": self.lemma_form(s, form)}
            expected = {s.wnid}
            budget = False
            if kind == "regular":
                template = self._pick(_REGULAR_TEMPLATES)
            elif kind == "low_relevance":
                template = self._lowrel_template()
            elif kind == "paraphrase":
                template = self._pick(_PARAPHRASE_TEMPLATES)
                gloss = s.gloss.split(";")[0].strip()
                slots["G"] = gloss
                budget = True
            elif kind == "two_synsets":
                template = self._pick(_TWO_TEMPLATES)
                slots["L2"] = self.lemma_form(partner, "singular")
                expected = {s.wnid, partner.wnid}
            else:
                raise ValueError(kind)
            text = self._fill(template, slots)
            allowed = self.ancestors_of.get(s.wnid, frozenset()) if kind == "paraphrase" else frozenset()
            if self._accept(text, expected, budget, allowed):
                return text, form
        return None


# ---------------------------------------------------------------------------------------
# images


@dataclass
class _Signature:
    shape: str
    texture: str
    hue: float
    freq: int
    angle: float
    count: int

    def as_dict(self) -> dict:
        return {"shape": self.shape, "texture": self.texture, "hue": round(self.hue, 4),
                "frequency": self.freq, "angle": round(self.angle, 1), "count": self.count}


def class_signature(k: int) -> _Signature:
    """Visual signature of class ``k``: every pair of classes differs in shape or texture
    (for k < 36) and in hue."""
    return _Signature(
        shape=SHAPES[k % len(SHAPES)],
        texture=TEXTURES[(k + k // len(SHAPES)) % len(TEXTURES)],
        hue=(k * 0.3819660113) % 1.0,
        freq=3 + (k * 7) % 4,
        angle=float((k * 37) % 180),
        count=1 if k % 3 else 2,
    )


class _Renderer:
    def __init__(self, size: int, rng: np.random.Generator):
        self.size = size
        self.rng = rng
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.xx, self.yy = xx, yy

    @staticmethod
    def _rgb(h, s, v):
        r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
        return np.array([r * 255, g * 255, b * 255], dtype=np.float32)

    def _polygon(self, shape, cx, cy, r, rot):
        def ngon(n, radius_fn):
            return [(cx + radius_fn(i) * math.cos(rot + 2 * math.pi * i / n),
                     cy + radius_fn(i) * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]

        if shape == "square":
            return ngon(4, lambda i: r)
        if shape == "triangle":
            return ngon(3, lambda i: r * 1.15)
        if shape == "hexagon":
            return ngon(6, lambda i: r)
        if shape == "star":
            return ngon(10, lambda i: r * 1.15 if i % 2 == 0 else r * 0.48)
        if shape == "diamond":
            return ngon(4, lambda i: r * 1.2 if i % 2 == 0 else r * 0.65)
        if shape == "cross":
            w = r * 0.38
            pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w),
                   (-r, -w), (-w, -w)]
            c, s = math.cos(rot), math.sin(rot)
            return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
        raise ValueError(shape)

    def _mask(self, shape, cx, cy, r, rot):
        from PIL import Image, ImageDraw

        m = Image.new("L", (self.size, self.size), 0)
        d = ImageDraw.Draw(m)
        if shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        elif shape == "ring":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            q = r * 0.55
            d.ellipse([cx - q, cy - q, cx + q, cy + q], fill=0)
        elif shape == "crescent":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            ox, oy = cx + 0.55 * r * math.cos(rot), cy + 0.55 * r * math.sin(rot)
            d.ellipse([ox - r * 0.85, oy - r * 0.85, ox + r * 0.85, oy + r * 0.85], fill=0)
        else:
            d.polygon(self._polygon(shape, cx, cy, r, rot), fill=255)
        return np.asarray(m) > 127

    def _texture(self, sig: _Signature, c1, c2):
        rng = self.rng
        a = math.radians(sig.angle + rng.uniform(-15, 15))
        u = self.xx * math.cos(a) + self.yy * math.sin(a)
        v = -self.xx * math.sin(a) + self.yy * math.cos(a)
        period = self.size / (sig.freq * rng.uniform(0.85, 1.15))
        phase = rng.uniform(0, period)
        if sig.texture == "solid":
            sel = np.ones_like(u, dtype=bool)
        elif sig.texture == "stripes":
            sel = np.mod(u + phase, period) < period / 2
        elif sig.texture == "dots":
            p = period * 0.8
            du = np.mod(u + phase, p) - p / 2
            dv = np.mod(v + phase, p) - p / 2
            sel = du * du + dv * dv > (p * 0.3) ** 2
        elif sig.texture == "checker":
            p = period * 0.7
            sel = (np.floor((u + phase) / p) + np.floor((v + phase) / p)) % 2 == 0
        else:
            raise ValueError(sig.texture)
        return np.where(sel[..., None], c1, c2)

    def _background(self, n_clutter: int):
        from PIL import Image, ImageDraw

        rng, size = self.rng, self.size
        c0 = self._rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.9))
        c1 = self._rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.9))
        a = rng.uniform(0, 2 * math.pi)
        t = (self.xx * math.cos(a) + self.yy * math.sin(a)) / size
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        arr = c0 * (1 - t[..., None]) + c1 * t[..., None]
        img = Image.fromarray(arr.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(n_clutter):
            col = tuple(int(x) for x in self._rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.2, 1)))
            x0, y0 = rng.uniform(0, size, 2)
            kind = rng.random()
            if kind < 0.5:
                x1, y1 = rng.uniform(0, size, 2)
                d.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, 3)))
            else:
                w, h = rng.uniform(size * 0.04, size * 0.15, 2)
                box = [x0, y0, x0 + w, y0 + h]
                (d.ellipse if kind < 0.75 else d.rectangle)(box, outline=col, width=1)
        return np.asarray(img).astype(np.float32)

    def render(self, sig: _Signature | None, clutter: tuple[int, int] = (4, 9)) -> bytes:
        from PIL import Image

        rng, size = self.rng, self.size
        arr = self._background(int(rng.integers(*clutter)))
        if sig is not None:
            hue = sig.hue + rng.uniform(-0.04, 0.04)
            c1 = self._rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
            c2 = self._rgb(hue, rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.4))
            tex = self._texture(sig, c1, c2)
            n = sig.count
            scale = 1.0 if n == 1 else 0.68
            for _ in range(n):
                r = size * rng.uniform(0.2, 0.33) * scale
                cx, cy = rng.uniform(r, size - r, 2)
                mask = self._mask(sig.shape, cx, cy, r, rng.uniform(0, 2 * math.pi))
                arr[mask] = tex[mask]
        arr += rng.normal(0, 6.0, arr.shape).astype(np.float32)
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        return buf.getvalue()

    def random_signature(self) -> _Signature:
        rng = self.rng
        return _Signature(shape=SHAPES[int(rng.integers(len(SHAPES)))],
                          texture=TEXTURES[int(rng.integers(len(TEXTURES)))], hue=float(rng.random()),
                          freq=int(rng.integers(3, 7)), angle=float(rng.uniform(0, 180)),
                          count=int(rng.integers(1, 3)))


# ---------------------------------------------------------------------------------------
# the corpus


@dataclass
class _Row:
    text: str | None
    group: str
    caption_kind: str
    form: str
    caption_wnids: list[str]
    image: str  # class | other_class | clutter | distractor | none
    image_class: int | None  # index of the visual class the image shows
    owner: int | None  # index of the visual class the caption belongs to
    served: str = "ok"
    punsafe_high: bool = False


def _class_caption_plan(rng, n: int) -> list[str]:
    n_two = max(1, round(0.03 * n))
    n_para = max(1, round(0.07 * n))
    n_low = max(1, round(0.04 * n))
    plan = ["two_synsets"] * n_two + ["paraphrase"] * n_para + ["low_relevance"] * n_low
    plan += ["regular"] * max(0, n - len(plan))
    plan = plan[:n]
    return [plan[i] for i in rng.permutation(len(plan))]


def generate(wordnet_root, out_dir, params) -> dict:
    """Write the demo corpus to ``out_dir`` (atomically); return its manifest."""
    params = parse_params(params)
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if (old and old.get("params") == params and old.get("format_version") == FORMAT_VERSION
                and all((out_dir / p).is_file() for p in old.get("parts", []))):
            log.info("%s: complete demo corpus with the same parameters exists; kept", out_dir)
            return old
    t0 = time.time()
    wn = load_wordnet(wordnet_root)
    lex = _Lexicon(wn)
    t_wn = time.time() - t0
    seed = params["seed"]
    rng_choose, rng_text, rng_rows, rng_img = (np.random.default_rng(s) for s in
                                               np.random.SeedSequence([seed, 20240501]).spawn(4))
    chooser = _Chooser(lex, rng_choose, seed)
    classes, distractors = chooser.choose(params["n_classes"])
    designed = {s.wnid for s in classes + distractors}
    writer = _CaptionWriter(lex, rng_text, designed)
    for d in distractors:
        if d.descendant:
            writer.ancestors_of[d.descendant] = writer.ancestors_of.get(d.descendant, frozenset()) | {d.wnid}
    t_choose = time.time() - t0 - t_wn

    n_per = params["images_per_class"]
    k_classes = len(classes)
    rows: list[_Row] = []
    # visual classes
    for k, c in enumerate(classes):
        plan = _class_caption_plan(rng_rows, n_per)
        n_noise = int(round(params["label_noise"] * n_per))
        noisy = set(rng_rows.permutation(n_per)[:n_noise].tolist())
        for i, kind in enumerate(plan):
            partner = None
            if kind == "two_synsets":
                partner = classes[(k + 1 + int(rng_rows.integers(k_classes - 1))) % k_classes]
            got = writer.caption(kind, c, partner)
            if got is None:  # e.g. no paraphrase within the incidental budget: a plain caption
                kind = "regular"
                got = writer.caption(kind, c)
                if got is None:
                    raise RuntimeError(f"demo corpus: no caption names only {c.name}")
            text, form = got
            wnids = [c.wnid] + ([partner.wnid] if kind == "two_synsets" else [])
            if kind == "paraphrase":
                wnids += [w for w in writer.designed_named(text) if w not in wnids]
            if i in noisy:
                if rng_rows.random() < 2 / 3:
                    other = (k + 1 + int(rng_rows.integers(k_classes - 1))) % k_classes
                    image, image_class = "other_class", other
                else:
                    image, image_class = "clutter", None
            else:
                image, image_class = "class", k
            rows.append(_Row(text, "class", kind, form, wnids, image, image_class, k))
    for c in classes:
        c.n_captions = sum(1 for r in rows if c.wnid in r.caption_wnids)
    extra_mentions = {}
    for r in rows:
        for w in r.caption_wnids[1:]:
            extra_mentions[w] = extra_mentions.get(w, 0) + 1
    # distractor synsets
    for d in distractors:
        if d.group == "rare":
            n = int(rng_rows.integers(RARE_CAPTIONS[0], RARE_CAPTIONS[1] + 1))
        else:
            n = DISTRACTOR_CAPTIONS
        kind = "low_relevance" if d.group == "low_relevance" else "regular"
        for _ in range(n):
            got = writer.caption(kind, d)
            if got is None:
                raise RuntimeError(f"demo corpus: no caption names only {d.name}")
            text, form = got
            rows.append(_Row(text, d.group, kind, form, [d.wnid], "distractor", None, None))
        d.n_captions = n + (extra_mentions.get(d.wnid, 0) if d.group == "ancestor" else 0)
    # rows without a caption (LAION has a few): the match step must skip them
    for _ in range(2):
        rows.append(_Row(None, "no_caption", "none", "none", [], "distractor", None, None))
    rows.append(_Row("", "no_caption", "empty", "none", [], "distractor", None, None))

    # served faults and unsafe rows, among the visual-class rows (so the download meets them)
    class_rows = [i for i, r in enumerate(rows) if r.group == "class"]
    n_fault = max(2, round(0.01 * len(class_rows)))
    picked = rng_rows.permutation(class_rows)[: 4 * n_fault].tolist()
    for j, i in enumerate(picked):
        kind = ("missing", "corrupt", "noai", "unsafe")[j // n_fault]
        if kind == "unsafe":
            rows[i].punsafe_high = True
        else:
            rows[i].served = kind

    # LAION-like numbers
    offsets = rng_rows.uniform(0.0, 0.035, k_classes)
    n = len(rows)
    order = rng_rows.permutation(n)
    sim = np.empty(n)
    punsafe = rng_rows.beta(1.0, 40.0, n)
    pwatermark = rng_rows.beta(1.0, 12.0, n)
    licenses = np.array(["?", "?", "?", "?", "?", "by", "by-nc", "by-nc-sa", "by-sa", "cc0"])
    license_col = licenses[rng_rows.integers(len(licenses), size=n)]
    for i, r in enumerate(rows):
        if r.owner is not None:
            match = r.image_class == r.owner
            sim[i] = 0.30 + (0.05 if match else 0.0) + offsets[r.owner] + rng_rows.normal(0, 0.012)
        else:
            sim[i] = 0.29 + rng_rows.normal(0, 0.01)
        if r.punsafe_high:
            punsafe[i] = rng_rows.uniform(0.55, 0.99)
    sim = np.clip(sim, 0.2, 0.5).round(6)
    punsafe = punsafe.round(5)
    nsfw_tag = np.where(punsafe > 0.5, "NSFW", np.where(punsafe > 0.1, "UNSURE", "UNLIKELY"))

    size = params["image_size"]
    renderer = _Renderer(size, rng_img)
    class_sigs = [class_signature(k) for k in range(k_classes)]
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        (tmp / "metadata").mkdir()
        names = [f"images/{j:06d}.jpg" for j in range(n)]
        url_prefix = f"http://127.0.0.1:{params['port']}/"
        lists = {"missing": [], "corrupt": [], "noai": []}
        # render in the shuffled order, so the bytes do not depend on Python's set order
        for j in range(n):
            r = rows[order[j]]
            name = names[j]
            if r.served == "missing":
                lists["missing"].append(name)
                continue
            if r.served == "corrupt":
                lists["corrupt"].append(name)
                data = b"\xff\xd8\xff\xe0" + rng_img.bytes(int(rng_img.integers(200, 800)))
            else:
                if r.image in ("class", "other_class"):
                    data = renderer.render(class_sigs[r.image_class])
                elif r.image == "clutter":
                    data = renderer.render(None, clutter=(10, 18))
                else:
                    data = renderer.render(renderer.random_signature())
                if r.served == "noai":
                    lists["noai"].append(name)
            (tmp / name).write_bytes(data)
        table = _metadata_table(
            sample_id=np.arange(n, dtype=np.int64),
            url=[url_prefix + nm for nm in names],
            text=[rows[i].text for i in order],
            size=size,
            similarity=sim[order], punsafe=punsafe[order], pwatermark=pwatermark[order].round(5),
            nsfw=nsfw_tag[order], license=license_col[order],
        )
        parts = []
        bounds = np.linspace(0, n, params["n_parts"] + 1).round().astype(int)
        import pyarrow.parquet as pq

        for p in range(params["n_parts"]):
            rel = f"metadata/part-{p:05d}.parquet"
            pq.write_table(table.slice(bounds[p], bounds[p + 1] - bounds[p]), tmp / rel,
                           row_group_size=ROW_GROUP_SIZE, compression="snappy")
            parts.append(rel)
        wnid_label = {c.wnid: k for k, c in enumerate(classes)}
        _write_truth(tmp / "truth.parquet", rows, order, names, url_prefix, classes, bounds)
        manifest = {
            "generator": "imagenot.corpus.demo",
            "format_version": FORMAT_VERSION,
            "params": params,
            "n_rows": n,
            "parts": parts,
            "url_prefix": url_prefix + "images/",
            "truth": "truth.parquet",
            **{k: sorted(v) for k, v in lists.items()},
            "classes": [{"index": k, "wnid": c.wnid, "name": c.name, "lemma": c.lemma, "gloss": c.gloss,
                         "synonyms": c.synonyms, "plurals": c.plurals, "irregular_plurals": c.irregular,
                         "n_captions": c.n_captions, "signature": class_sigs[k].as_dict(), "why": c.why}
                        for k, c in enumerate(classes)],
            "distractors": [{"group": d.group, "wnid": d.wnid, "name": d.name, "lemma": d.lemma,
                             "gloss": d.gloss, "n_captions": d.n_captions, "why": d.why,
                             **({"descendant": d.descendant,
                                 "descendant_index": wnid_label[d.descendant]} if d.descendant else {})}
                            for d in distractors],
            "incidental_synsets": dict(sorted(writer.incidental.items())),
            "notes": {
                "similarity": "stand-in for LAION's CLIP caption-image similarity: higher when the image "
                              "shows the class the caption names; not computed by a model",
                "NSFW": "UNLIKELY / UNSURE / NSFW from punsafe (<= 0.1 / <= 0.5 / > 0.5)",
                "served": "missing files answer 404; corrupt files are invalid JPEG bytes; noai files are "
                          "served with 'X-Robots-Tag: noai' by imagenot serve-demo",
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("demo corpus: %d rows, %d visual classes, %d distractor synsets in %s "
             "(WordNet %.1f s, synsets %.1f s, total %.1f s)", n, k_classes, len(distractors), out_dir,
             t_wn, t_choose, time.time() - t0)
    return manifest


def _metadata_table(sample_id, url, text, size, similarity, punsafe, pwatermark, nsfw, license):
    import pyarrow as pa

    n = len(url)
    return pa.table({
        "SAMPLE_ID": pa.array(sample_id, pa.int64()),
        "URL": pa.array(url, pa.string()),
        "TEXT": pa.array(text, pa.string()),
        "WIDTH": pa.array(np.full(n, size, dtype=np.int64)),
        "HEIGHT": pa.array(np.full(n, size, dtype=np.int64)),
        "similarity": pa.array(np.asarray(similarity, dtype=np.float64)),
        "punsafe": pa.array(np.asarray(punsafe, dtype=np.float32)),
        "pwatermark": pa.array(np.asarray(pwatermark, dtype=np.float32)),
        "NSFW": pa.array(list(nsfw), pa.string()),
        "LICENSE": pa.array(list(license), pa.string()),
    })


def _write_truth(path, rows, order, names, url_prefix, classes, bounds):
    import pyarrow as pa
    import pyarrow.parquet as pq

    part_of = np.searchsorted(bounds[1:], np.arange(len(rows)), side="right")
    recs = [rows[i] for i in order]
    table = pa.table({
        "SAMPLE_ID": pa.array(np.arange(len(rows), dtype=np.int64)),
        "part": pa.array(part_of.astype(np.int64)),
        "name": pa.array(names, pa.string()),
        "url": pa.array([url_prefix + nm for nm in names], pa.string()),
        "text": pa.array([r.text for r in recs], pa.string()),
        "group": pa.array([r.group for r in recs], pa.string()),
        "caption_kind": pa.array([r.caption_kind for r in recs], pa.string()),
        "form": pa.array([r.form for r in recs], pa.string()),
        "caption_wnids": pa.array([r.caption_wnids for r in recs], pa.list_(pa.string())),
        "owner_wnid": pa.array([classes[r.owner].wnid if r.owner is not None else None for r in recs],
                               pa.string()),
        "image": pa.array([r.image for r in recs], pa.string()),
        "image_wnid": pa.array([classes[r.image_class].wnid if r.image_class is not None else None
                                for r in recs], pa.string()),
        "served": pa.array([r.served for r in recs], pa.string()),
        "punsafe_high": pa.array([r.punsafe_high for r in recs], pa.bool_()),
    })
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, compression="snappy")


# ---------------------------------------------------------------------------------------
# CLI


def add_commands(sub) -> None:
    p = sub.add_parser("demo-corpus", help="generate the embedded demo corpus (LAION-style metadata + images)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wordnet-root", required=True, help="NLTK data root holding corpora/wordnet (wordnet.root)")
    p.add_argument("--out-dir", required=True, help="corpus directory (metadata/, images/, manifest.json)")
    p.add_argument("--params", default="{}", help="JSON of the config section corpus.demo")
    p.set_defaults(func=_cmd_demo_corpus)


def _cmd_demo_corpus(args) -> int:
    manifest = generate(args.wordnet_root, args.out_dir, args.params)
    print(f"{args.out_dir}: {manifest['n_rows']} rows in {len(manifest['parts'])} parts, "
          f"{len(manifest['classes'])} visual classes, {len(manifest['distractors'])} distractor synsets")
    return 0
