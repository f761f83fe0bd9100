"""memoryd: a local-first, encrypted memory appliance."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
# The most memories a memory.import call takes (docs/protocol.md); clients batch by it.
IMPORT_BATCH_MAX = 1000
