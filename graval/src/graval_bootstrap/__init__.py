"""GraVal bootstrap: the per-node GPU verification server run during add-node."""

__version__ = "0.1.0"
