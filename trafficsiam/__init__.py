"""trafficsiam: tell good traffic from known failures and spot new kinds of failure.

The pipeline, one module per stage:

    read -> validate -> normalise -> triplets -> train -> embed -> cluster -> (score -> report)

`trafficsiam.fit`, `trafficsiam.load` and `trafficsiam.Model` (`trafficsiam.library`) are
the library over DataFrames; `trafficsiam.api` composes the stages; the CLI is a thin
layer over it.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

__version__ = version("trafficsiam")  # pyproject.toml's, the one place it is written
__all__ = ["Model", "__version__", "fit", "load"]

if TYPE_CHECKING:
    from trafficsiam.library import Model, fit, load


def __getattr__(name: str) -> Any:
    # Imported on first use: `import trafficsiam` (and the CLI's --help) stays quick,
    # torch is loaded only by what needs it.
    if name in ("Model", "fit", "load"):
        from trafficsiam import library

        return getattr(library, name)
    raise AttributeError(f"module 'trafficsiam' has no attribute {name!r}")
