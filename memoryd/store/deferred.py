"""Packages that a dependency imports but memoryd never uses, imported when first used.

lancedb imports ``lance_namespace``, which imports names from the
``lance_namespace_urllib3_client.models`` subpackage. Importing that subpackage runs the
package's own ``__init__`` first, and that imports the whole REST client (every API
module, urllib3): ~0.45 s of a ~0.9 s ``import lancedb`` on these machines, on the path
of a daemon's first search at a million memories. memoryd opens local folders only and
never talks to a namespace server. Lance made the same client lazy in ``import lance``
(lance-format/lance#9273); lancedb 0.40 still imports it eagerly.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

# lancedb's unused REST client, deferred before lancedb is imported (memoryd/store/vectors.py).
LANCE_REST_CLIENT = "lance_namespace_urllib3_client"


def defer_package(name: str) -> bool:
    """Register package ``name`` without running its ``__init__``: its submodules import
    as usual, and the ``__init__`` runs, once, when something asks the package for a
    name it does not have yet. Returns whether the package was deferred (not when it is
    imported already, or not installed)."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.Lock()

    def load_on_first_use(attr: str) -> Any:
        with lock:
            if package.__dict__.get("__getattr__") is load_on_first_use:
                del package.__dict__["__getattr__"]
                loader.exec_module(package)
        return ModuleType.__getattribute__(package, attr)

    package.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    sys.modules[name] = package
    return True
