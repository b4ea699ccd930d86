"""Manifests (version 1): YAML files in, frozen ExportSpecs out, every problem at FILE:LINE:COL.

Each file is read as a stream of YAML events (safe parsing, positions kept) and walked one
workspace at a time: no node tree of a whole document is ever built, and no YAML constructor ever
runs. Defaults apply within their own file; settings and tasks are merged across files. All
problems of all files are collected and raised together as one ManifestError.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from yaml.events import ScalarEvent

from runner import manifest_events
from runner.manifest_events import Events, Trail, is_list, is_mapping, is_text
from runner.manifest_rules import NO_HINTS, Level, Rules
from runner.manifest_yaml import Node, Pair, Problem, Sink, gc_paused
from runner.models import MAX_CONCURRENCY, ExportSpec, Manifest, Settings

__all__ = ["ManifestError", "Problem", "expand_paths", "load_manifests"]

SUPPORTED_VERSION = 1
# A workspace's tasks are held until its own keys are all known, which may be after its tasks
# list; a longer list is read again instead, by a second parser, once they are (see Trail).
HELD_TASKS = 500
_TOP_KEYS = frozenset({"version", "settings", "defaults", "workspaces"})
_SETTINGS_KEYS = frozenset({"rate", "concurrency"})


class ManifestError(Exception):
    """Every problem found in every manifest file, sorted by file, line and column."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column)))
        super().__init__("\n".join(map(str, self.problems)))


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the *.yaml / *.yml files directly inside folders (not recursive,
    not hidden ones, the suffix in any case), sorted by name; a path given twice is read once.
    Raises ManifestError for missing paths."""
    problems: list[Problem] = []
    files = _expand(paths, problems)
    if problems:
        raise ManifestError(problems)
    return files


def load_manifests(paths: Sequence[str | Path]) -> Manifest:
    """Load and validate manifests; raises ManifestError with all problems of all files."""
    problems: list[Problem] = []
    if not paths:
        raise ManifestError([Problem("-", 1, 1, "no manifest given")])
    loader = _Loader(problems)
    with gc_paused():
        for path in _expand(paths, problems):
            loader.load(path)
    if problems:
        raise ManifestError(problems)
    return Manifest(specs=tuple(loader.specs), settings=loader.merged_settings())


def _expand(paths: Sequence[str | Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            # hidden files (an editor's, or macOS's ._ copies on a shared drive) are left out
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in (".yaml", ".yml") and not p.name.startswith(".")
            )
            found = [p for p in found if p.is_file()]
            if not found:
                problems.append(Problem(str(path), 1, 1, "folder has no .yaml or .yml files"))
        elif path.is_file():
            found = [path]
        elif path.exists():  # a FIFO or a device would block or never end
            problems.append(Problem(str(path), 1, 1, "not a regular file"))
            continue
        else:
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
            continue
        for file in found:
            if (real := file.resolve()) in seen:
                continue
            seen.add(real)
            size = file.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                limit = MAX_MANIFEST_BYTES // 2**20
                problems.append(
                    Problem(
                        str(file),
                        1,
                        1,
                        f"the file is {size / 2**20:.0f} MiB; a manifest may be at most {limit} MiB"
                        " (split it: several files and folders may be given)",
                    )
                )
                continue
            files.append(file)
    return files


# A guard, not a format limit: 64 MiB holds about a million tasks; a bigger file is a mistake
# (a log, a dump) more often than a manifest, and would be read whole before any problem shows.
MAX_MANIFEST_BYTES = 64 * 2**20

_Setting = tuple[float | int, str, str]  # the value, as written, where


class _Loader:
    """Keeps what spans files: problems, tasks seen, specs, settings."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.specs: list[ExportSpec] = []
        self.seen: dict[tuple[str, int, str], str] = {}  # (region, project_id, name): where
        self.imports: dict[tuple[str, int, str], str] = {}  # the same, of the import tasks
        self.settings: dict[str, _Setting] = {}

    def merged_settings(self) -> Settings:
        rate = self.settings.get("rate")
        concurrency = self.settings.get("concurrency")
        return Settings(
            rate=None if rate is None else float(rate[0]),
            concurrency=None if concurrency is None else int(concurrency[0]),
        )

    def load(self, path: Path) -> None:
        walk = _File(path, self.seen, self.imports, self.settings)
        parsed = manifest_events.read(path, walk.yaml, walk.root)
        if parsed and walk.rewalk:  # defaults came after the workspaces: walk them again
            parsed = manifest_events.read(path, walk.yaml, walk.workspaces_again)
        self.problems += walk.yaml.problems
        if not parsed or not walk.version_ok:
            walk.rules.retract()
        if parsed:
            self.problems += walk.problems()
            self.specs += walk.rules.specs
            for key, setting in walk.settings.items():
                self.settings.setdefault(key, setting)


class _File:
    """The walk of one file's root. Its problems are kept apart, by part, until the file has
    parsed: a YAML error, or a version other than 1, drops some or all of them."""

    def __init__(
        self,
        path: Path,
        seen: dict[tuple[str, int, str], str],
        imports: dict[tuple[str, int, str], str],
        settings: dict[str, _Setting],
    ) -> None:
        name = str(path)
        self.yaml = Sink(name, [])  # unreadable, not UTF-8, anchors, syntax: nothing else counts
        self.top = Sink(name, [])  # top-level keys and the version
        self.rest = Sink(name, [])  # settings and defaults: dropped with another version
        self.rules = Rules(Sink(name, []), seen, imports)  # the workspaces: dropped likewise
        self.earlier = settings  # of the files before this one
        self.settings: dict[str, _Setting] = {}
        self.version_ok = True
        self.defaults: Level | None = None
        self.walked_with: Level | None = None  # the defaults the workspaces were walked with
        self.rewalk = False

    def problems(self) -> list[Problem]:
        if not self.version_ok:
            return self.top.problems
        return self.top.problems + self.rest.problems + self.rules.sink.problems

    def root(self, events: Events, trail: Trail) -> None:
        root = events.take()
        top = self.top
        if not is_mapping(root):
            events.skip(root)
            top.wrong(root, "the manifest", "a mapping")
            return
        first: dict[str, Node] = {}
        settings: tuple[Node, list[Pair] | None] | None = None
        for key in events.each_key():
            name = top.key(key, _TOP_KEYS, "the manifest", NO_HINTS)
            if name is None or name in first:
                if name is not None:
                    top.duplicate(key, name, first[name], "the manifest")
                events.node()
            elif name == "version":
                first[name] = key
                self.version_ok = self._version(events.node())
            elif name == "workspaces":
                first[name] = key
                if self.version_ok:
                    self.walked_with = self.defaults or Level()
                    self._workspaces(events, trail, events.take(), self.walked_with)
                else:
                    events.node()
            else:
                first[name] = key
                node = events.take()
                if name == "settings":
                    settings = (node, events.mapping(node))
                else:  # read with rules of their own, to report into rest
                    pairs, tree = events.mapping_with_tree(node, "import_into")
                    rules = Rules(self.rest, self.rules.seen, self.rules.imports)
                    self.defaults = rules.defaults(node, pairs, tree)
        if "version" not in first:
            top.at(
                root,
                f"missing required key 'version' (this runner reads version {SUPPORTED_VERSION})",
            )
        if not self.version_ok:
            return  # another format: checking it against version 1 rules would only mislead
        if settings is not None:
            self._settings(*settings)
        if "workspaces" not in first:
            self.rest.at(root, "missing required key 'workspaces'")
            return
        if self.walked_with != (self.defaults or Level()):
            self.rules.retract()  # walked with defaults that were not all there yet
            self.rules.sink.problems.clear()
            self.rewalk = True
            return
        self._check_defaults_used()

    def workspaces_again(self, events: Events, trail: Trail) -> None:
        """The second walk, now the defaults are known: the first workspaces key's list only."""
        events.take()
        walked = False
        for key in events.each_key():
            if not walked and is_text(key, "workspaces"):
                walked = True
                self._workspaces(events, trail, events.take(), self.defaults or Level())
            else:
                events.node()
        self._check_defaults_used()

    def _check_defaults_used(self) -> None:
        defaults = self.defaults or Level()
        self.rules.check_used(defaults.since, "no INCREMENTAL task in this file uses it")
        self.rules.check_import_name_used(defaults.import_name)

    def _workspaces(self, events: Events, trail: Trail, node: Node, defaults: Level) -> None:
        rules = self.rules
        if not is_list(node):
            events.skip(node)
            rules.sink.wrong(node, "workspaces", "a list")
            return
        for item in events.each_item():
            pairs, held, spilled, tree = events.mapping_with_list(
                item, "tasks", HELD_TASKS, "import_into"
            )
            tasks = held if spilled is None else trail.items(spilled)
            rules.workspace(item, pairs, tasks, defaults, tree)

    def _version(self, node: Node) -> bool:
        version = self.top.integer(node, "version")
        if version is not None and version != SUPPORTED_VERSION:
            self.top.at(
                node,
                f"unsupported manifest version {version} (this runner reads "
                f"version {SUPPORTED_VERSION})",
            )
            return False
        return True

    def _settings(self, node: Node, pairs: list[Pair] | None) -> None:
        sink = self.rest
        fields = sink.fields(node, pairs, _SETTINGS_KEYS, "settings", NO_HINTS)
        for key, (_, value_node) in (fields or {}).items():
            value: float | int | None
            if key == "rate":
                value = sink.number(value_node, "settings.rate")
            else:
                value = sink.integer(value_node, "settings.concurrency")
            if value is None or type(value_node) is not ScalarEvent:
                continue
            written = value_node.value
            if value <= 0:
                sink.at(value_node, f"settings.{key} must be positive, got {written}")
                continue
            if key == "concurrency" and value > MAX_CONCURRENCY:
                sink.at(
                    value_node, f"settings.concurrency is at most {MAX_CONCURRENCY}, got {written}"
                )
                continue
            if key not in self.earlier:
                self.settings[key] = (value, written, sink.site(value_node))
            elif self.earlier[key][0] != value:
                _, first, where = self.earlier[key]
                sink.at(value_node, f"settings.{key} is {written} here but {first} at {where}")
