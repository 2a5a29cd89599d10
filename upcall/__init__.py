"""cifs-upcall: the request-key helper for cifs.spnego keys.

Public API: `upcall.cli.main` (the request-key entry point) and `upcall.pipeline.run_upcall`.
Modules are small and imported lazily: an upcall is on the path of every first access.
"""

__version__ = "0.1.0"
