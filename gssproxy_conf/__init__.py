"""gssproxy-conf: one validated YAML file -> every client-side piece of a cifs-upcall setup.

Pipeline: ``yaml_loader`` (nodes with lines) -> ``schema`` (validated ``model.Config``) ->
``render_*`` / ``ad`` (pure text) -> ``plan`` (files) -> ``apply`` (atomic, owned files only).
``check`` lints an existing gssproxy configuration.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
