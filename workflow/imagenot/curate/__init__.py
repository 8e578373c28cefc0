"""Class and image curation (paper section 3, "Constructing ImageNot", steps 1-8).

- ``vocab``: WordNet noun synsets and their surface forms (lemmas and plurals);
- ``match``: step 1, the synsets each caption names (whole-word n-gram matching);
- ``filters``: steps 2-6, candidate synsets and the captions that name exactly one;
- ``embed``: step 7's text embeddings (caption x "lemmas: gloss" cosine similarity);
- ``select``: steps 7-8 and the choice of images per class.

``cli`` registers the ``imagenot curate ...`` subcommands.
"""
