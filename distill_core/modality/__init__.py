"""What differs between kinds of input. A session talks to its data only through a modality: how examples
are encoded once, batched, fed to a model, evaluated, and shown on the axes of an attention map.

Text (`TextModality`) is the one built today; an image modality plugs in with the same methods.
"""
from .text import Batch, TextModality

__all__ = ["Batch", "TextModality"]
