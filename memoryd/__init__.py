"""memoryd: a local-first, encrypted memory appliance."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
