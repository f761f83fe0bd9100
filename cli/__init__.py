"""The `memory` command line: a thin client of memoryd (imported as `memory_cli`)."""
