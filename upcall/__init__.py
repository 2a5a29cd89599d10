"""cifs-upcall: the request-key helper for cifs.spnego keys.

Public API (resolved lazily on first use: the thin client must not pay for any of it):

    parse_description(text) -> Request           kernel/request.py, pure, strict
    run_upcall(request, Options(...)) -> Outcome  pipeline.py: the whole credential search, no
                                                  keyring; Outcome.ok, .reason, .payload, .trail
    Workers, ForkedWorkers                        pipeline.py: the seam under run_upcall
    Reason, UpcallError, rebuild                  errors.py: one registry of failure classes
    SpnegoMsg                                     kernel/payload.py: struct cifs_spnego_msg v2

Processes (which code runs where is in the path): `client` is what request-key runs (root,
host namespaces); `daemon`/`respond`/`pipeline` the warm daemon's handler or the client
in-process (root, host namespaces); `worker/` forked workers, of which `sources/local` runs as
the user with no capability in the caller's namespaces and `sources/proxy` as uid 0 with no
capability in the host's; `caller/` reads the caller from the host before any switch.
"""

__version__ = "0.1.0"

_PUBLIC = {
    "parse_description": "upcall.kernel.request",
    "Request": "upcall.kernel.request",
    "run_upcall": "upcall.pipeline",
    "Options": "upcall.pipeline",
    "Outcome": "upcall.pipeline",
    "Workers": "upcall.pipeline",
    "ForkedWorkers": "upcall.pipeline",
    "Reason": "upcall.errors",
    "UpcallError": "upcall.errors",
    "rebuild": "upcall.errors",
    "SpnegoMsg": "upcall.kernel.payload",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'upcall' has no attribute {name!r}")
