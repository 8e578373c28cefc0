"""imagenot: build a deliberately different dataset from a web-scale image-text corpus,
train a zoo of architectures on it from scratch, and test whether model rankings agree."""

__version__ = "0.1.0"
