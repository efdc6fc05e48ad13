"""The Aegis runtime, `aegis_runtime` in every image: what a model handler may import from it."""
from .signature import InvalidInput

__all__ = ["InvalidInput"]
