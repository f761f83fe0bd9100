"""Text embeddings: a small interface, the fastembed ONNX provider, and a test embedder."""

from memoryd.embed.base import Embedder, EmbeddingRuntime, make_embedder

__all__ = ["Embedder", "EmbeddingRuntime", "make_embedder"]
