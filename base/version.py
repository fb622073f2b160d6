"""The version of deepntk, defined here once (pyproject.toml reads it; deepntk.__version__ is this)."""

__version__ = "0.1.0"
