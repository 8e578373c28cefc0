"""Synthetic LAION-like captions for the curation benchmarks (deterministic by seed).

LAION captions are short (median ~8 words), mostly English filler ("stock photo", "for
sale", sizes, brand-like tokens, numbers), with a few nouns, in mixed case with
punctuation, hyphens, ids and the odd non-ASCII character. ``captions(vocab, n, seed)``
writes that from a vocabulary of WordNet surfaces (lemmas and their plurals): each
caption has 0-3 surfaces (some multiword, some plural, cased like a title or shouted),
embedded in 3-14 filler tokens.
"""

from __future__ import annotations

import numpy as np

FILLER = """
the a an of and in on with for to by at from new best free high quality hd photo stock image
vector illustration design set pack vintage modern style size cheap sale buy online shop
store official wallpaper background white black red blue green pink gold silver large small
mini big 2019 2020 2021 2022 3d 4k 1080p 1920x1080 png jpg isolated cute beautiful funny
women men kids baby girl boy home decor wall art print poster canvas sticker shirt t-shirt
mug case cover iphone samsung collection premium luxury handmade custom personalized gift
idea ideas diy easy simple how make your my our this that these best-seller top rated
review 100% original genuine brand xl xxl cm mm inch x 2pcs 10pcs lot sets cotton wooden
metal plastic glass leather summer winter spring autumn christmas wedding birthday party
""".split()

PUNCT = ["", "", "", ",", ".", "!", " -", " |", ":", "...", " &", "(", ")", "'s", "/", " #", '"']
NON_ASCII = ["Café", "naïve", "Zürich", "résumé", "—", "©", "™", "São", "élégant"]


def captions(surfaces: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` captions over ``surfaces`` (normalised WordNet surfaces, e.g. vocab.parquet's)."""
    rng = np.random.default_rng(seed)
    surfaces = list(surfaces)
    n_filler = rng.integers(3, 15, n)
    n_noun = rng.choice([0, 1, 1, 1, 2, 2, 3], n)
    nouns = rng.integers(0, len(surfaces), int(n_noun.sum()))
    fill = rng.integers(0, len(FILLER), int(n_filler.sum()))
    case = rng.random(int(n_filler.sum() + n_noun.sum()))
    punct = rng.integers(0, len(PUNCT), int(n_filler.sum() + n_noun.sum()))
    extra = rng.random(n)
    out = []
    fi = ni = ci = 0
    for k in range(n):
        words = [FILLER[j] for j in fill[fi:fi + n_filler[k]]]
        fi += n_filler[k]
        for _ in range(n_noun[k]):
            s = surfaces[nouns[ni]]
            ni += 1
            if " " in s and rng.random() < 0.2:
                s = s.replace(" ", "-")
            words.insert(int(rng.integers(0, len(words) + 1)), s)
        toks = []
        for w in words:
            c = case[ci]
            p = PUNCT[punct[ci]]
            ci += 1
            if c < 0.3:
                w = w.title()
            elif c < 0.35:
                w = w.upper()
            toks.append(w + p)
        if extra[k] < 0.03:
            toks.insert(0, NON_ASCII[k % len(NON_ASCII)])
        elif extra[k] < 0.06:
            toks.append(f"#{int(extra[k] * 1e6)}")
        out.append(" ".join(toks))
    return out
