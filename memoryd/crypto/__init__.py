"""Cryptography for memoryd: the data key and its key file (``keys``) and the
distance-comparison-preserving encryption of vectors kept in the vector index (``sap``).

Nothing here touches a database; the store asks for a DuckDB key string and a cipher.
"""
