"""oncotwin: digital twins of cancer patients."""

__version__ = "0.1.0"
