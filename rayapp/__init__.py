"""rayapp: Ray-native retrieval-augmented generation and recommendation."""

__version__ = "0.1.0"
