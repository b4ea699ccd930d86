"""Fuzzing the manifest loader through its public API only (`runner.manifest.load_manifests`):
any bytes, and any YAML built from the manifest's own words, give a Manifest or a ManifestError
whose every problem has a position, and nothing else."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from runner.manifest import ManifestError, load_manifests
from runner.models import Manifest

pytestmark = pytest.mark.fuzz

POSITIONED = re.compile(r"^.+:\d+:\d+: .+", re.DOTALL)
WORDS = (
    "version",
    "settings",
    "rate",
    "concurrency",
    "defaults",
    "region",
    "export_mode",
    "export_object_status",
    "description",
    "name",
    "workspaces",
    "project_id",
    "label",
    "tasks",
    "incremental_since",
    "import_into",
    "import_name",
    "package_type",
    "commit_rule",
    "calculate_engine_map",
    "resource_group_map",
    "workspace_map",
    "ignoreLock",
    "ODPS",
    "DI_RESOURCE_GROUP",
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**300),  # far beyond any id
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        [
            "FULL",
            "INCREMENTAL",
            "SAVED",
            "cn-shanghai",
            "backup-{project_id}",
            "2020-05-20",
            "DATAWORKS_MODEL",
        ]
    ),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=20,
)
MANIFESTS = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 2, "1"]), "workspaces": DOCUMENTS},
    optional={"defaults": DOCUMENTS, "settings": DOCUMENTS},
)


def load(content: bytes) -> Manifest | ManifestError:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_bytes(content)
        try:
            return load_manifests([path])
        except ManifestError as error:
            return error


def check(result: Manifest | ManifestError) -> None:
    if isinstance(result, ManifestError):
        assert result.problems
        for problem in result.problems:
            assert POSITIONED.match(str(problem)), str(problem)
    else:
        assert isinstance(result, Manifest)


@given(content=st.binary(max_size=400))
def test_any_bytes_load_or_fail_with_positions(content: bytes) -> None:
    """Arbitrary bytes: a manifest, or problems each at FILE:LINE:COL."""
    check(load(content))


@given(document=MANIFESTS)
def test_any_yaml_of_manifest_words_loads_or_fails_with_positions(document: Any) -> None:
    """YAML shaped like a manifest, with any values (huge integers, floats, nulls, nesting):
    a manifest, or problems each at FILE:LINE:COL."""
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    check(load(text.encode()))


@given(defaults=DOCUMENTS, own=DOCUMENTS, import_name=SCALARS)
def test_any_import_into_loads_or_fails_with_positions(
    defaults: Any, own: Any, import_name: Any
) -> None:
    """Any import_into and import_name: a manifest, or problems each at FILE:LINE:COL."""
    document = {
        "version": 1,
        "defaults": {"region": "cn-shanghai", "import_into": defaults},
        "workspaces": [
            {"project_id": 101, "name": "a", "import_into": own, "import_name": import_name},
            {"project_id": 102, "tasks": [{"name": "b", "import_name": import_name}]},
        ],
    }
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    check(load(text.encode()))


@given(
    field=st.sampled_from(["project_id", "incremental_since", "rate", "concurrency"]),
    digits=st.integers(4301, 20_000),
)
def test_an_integer_of_thousands_of_digits_is_a_positioned_problem(field: str, digits: int) -> None:
    """A 5,000-digit number (beyond int()'s default digit limit) is a problem at its position."""
    text = (
        "version: 1\nsettings:\n  rate: 1\ndefaults:\n  region: cn-shanghai\n  name: t\n"
        "workspaces:\n  - project_id: 101\n    tasks:\n      - name: a\n"
        "        export_mode: INCREMENTAL\n        incremental_since: 1\n"
    )
    text = re.sub(rf"({field}: )\d+", lambda m: m[1] + "9" * digits, text, count=1)
    check(load(text.encode()))
