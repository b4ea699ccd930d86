"""runner: create DataWorks export tasks across many workspaces, once each, under the rate limit."""

from __future__ import annotations

__version__ = "0.1.0"
