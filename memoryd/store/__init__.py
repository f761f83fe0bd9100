"""The only package that imports duckdb or lancedb.

``database`` owns the encrypted DuckDB file (the source of truth); ``vectors`` owns the
derived LanceDB index of encrypted vectors; ``migrations`` evolves the DuckDB schema.
"""
