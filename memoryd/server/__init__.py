"""The daemon: JSON-RPC framing, method dispatch, and process lifecycle."""
