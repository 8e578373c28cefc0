"""Image-text corpora the curation reads.

- ``demo``: the embedded demo corpus, a small LAION-style metadata collection written from
  real WordNet lemmas, with procedurally rendered images behind it, so that the whole
  ImageNot DAG (curation, download, training) runs on a laptop without the internet;
- ``server``: a local HTTP server for the demo images (404s, ``X-Robots-Tag: noai``), which
  the download stage starts and stops around img2dataset.

Real LAION metadata parts are fetched by ``imagenot.fetch``.
"""
