"""govlake: bureau feeds into Delta, quality gates, shared base libraries."""

__version__ = "0.1.0"
