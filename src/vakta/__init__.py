"""Vakta: find known child sexual abuse material by hash-list matching, without anyone looking at it."""

__version__ = "0.1.0"
