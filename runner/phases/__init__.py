"""The phases of a run, in order. Each sends through the one attempt loop (`runner.attempt`),
states its policy as data and returns its own stats."""

from __future__ import annotations

import enum


class Stage(enum.IntEnum):
    """How far a run carries each task; each stage implies the ones before it."""

    CREATE = 1
    START = 2
    WAIT = 3
    DOWNLOAD = 4
    IMPORT = 5  # upload, create the import, start it and wait for it

    @classmethod
    def of(
        cls,
        *,
        start: bool = False,
        wait: bool = False,
        download: bool = False,
        imports: bool = False,
    ) -> Stage:
        """The furthest stage the flags ask for (--import implies --download implies --wait
        implies --start)."""
        if imports:
            return cls.IMPORT
        if download:
            return cls.DOWNLOAD
        if wait:
            return cls.WAIT
        return cls.START if start else cls.CREATE
