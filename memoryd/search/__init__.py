"""Retrieval: lexical analysis, fusion of signals. Pure functions; the stores do the I/O."""
