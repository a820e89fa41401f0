"""Trainable embedders (KaLM-Embedding style): any HF encoder or decoder, bidirectional attention
for decoders, mean/cls/lasttoken pooling, instructions, Matryoshka truncation, sentence-transformers
folders in and out. Training lives in :mod:`rayapp.train`."""

from rayapp.embed.model import Embedder, format_query, is_decoder_config, set_bidirectional

__all__ = ["Embedder", "format_query", "is_decoder_config", "set_bidirectional"]
