"""The console's web UI under ``/ui``: server-rendered pages, one CSS file, no scripts, never file content."""

from __future__ import annotations

from vakta.server.ui.routes import install

__all__ = ["install"]
