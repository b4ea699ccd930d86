"""The DataWorks simulator."""

from __future__ import annotations
