"""The journal's schema: numbered migrations, applied in order by `runner.journal`."""

from __future__ import annotations

ATTEMPTS_TABLE = """CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    region TEXT NOT NULL, project_id INTEGER NOT NULL, name TEXT NOT NULL,
    at REAL NOT NULL, action TEXT NOT NULL, http_status INTEGER, error_code TEXT,
    request_id TEXT, latency_ms REAL, outcome TEXT NOT NULL,
    FOREIGN KEY (region, project_id, name) REFERENCES tasks (region, project_id, name))"""
ATTEMPTS_GUARDS = (
    "CREATE INDEX attempts_by_task ON attempts (region, project_id, name, id)",
    """CREATE TRIGGER attempts_no_update BEFORE UPDATE ON attempts
       BEGIN SELECT RAISE(ABORT, 'attempts are append-only'); END""",
    """CREATE TRIGGER attempts_no_delete BEFORE DELETE ON attempts
       BEGIN SELECT RAISE(ABORT, 'attempts are append-only'); END""",
)

# Numbered schema migrations: step N (1-based) takes the schema from version N-1 to N and is
# recorded in `PRAGMA user_version`. Steps are frozen once released; changes go in a new step.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE tasks (
            region TEXT NOT NULL, project_id INTEGER NOT NULL, name TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('pending', 'in_flight', 'created', 'started', 'exported', 'failed')),
            migration_id INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
            error_code TEXT, error_message TEXT, request_id TEXT, download_url TEXT,
            fingerprint TEXT, create_sent INTEGER NOT NULL DEFAULT 0 CHECK (create_sent IN (0, 1)),
            created_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (region, project_id, name))""",
        ATTEMPTS_TABLE,
        *ATTEMPTS_GUARDS,
    ),
    # 2: where an exported task's package was saved (runner run --download)
    ("ALTER TABLE tasks ADD COLUMN package_path TEXT",),
    # 3: states are checked by the code (TaskState), not by the table, so that new states
    # (`exists`, the import leg's) need no rebuild. SQLite cannot drop a CHECK: both tables are
    # rebuilt, the history copied as it is (ids kept), the old ones dropped.
    (
        "DROP TRIGGER attempts_no_update",
        "DROP TRIGGER attempts_no_delete",
        "DROP INDEX attempts_by_task",
        "ALTER TABLE attempts RENAME TO attempts_v2",
        "ALTER TABLE tasks RENAME TO tasks_v2",
        """CREATE TABLE tasks (
            region TEXT NOT NULL, project_id INTEGER NOT NULL, name TEXT NOT NULL,
            state TEXT NOT NULL,
            migration_id INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
            error_code TEXT, error_message TEXT, request_id TEXT, download_url TEXT,
            fingerprint TEXT, create_sent INTEGER NOT NULL DEFAULT 0 CHECK (create_sent IN (0, 1)),
            created_at REAL NOT NULL, updated_at REAL NOT NULL, package_path TEXT,
            PRIMARY KEY (region, project_id, name))""",
        ATTEMPTS_TABLE,
        "INSERT INTO tasks SELECT * FROM tasks_v2",
        "INSERT INTO attempts SELECT * FROM attempts_v2",
        "DROP TABLE attempts_v2",
        "DROP TABLE tasks_v2",
        *ATTEMPTS_GUARDS,
    ),
    # 4: the credentials profile a task's workspace is reached with (manifests that span accounts)
    ("ALTER TABLE tasks ADD COLUMN profile TEXT",),
    # 5: the import leg (runner run --import): the target import task as the manifest gave it
    # (where, with which profile, and the CreateImportMigration parameters as JSON), the uploaded
    # package, whether a CreateImportMigration was sent, and the import task's id
    (
        "ALTER TABLE tasks ADD COLUMN import_region TEXT",
        "ALTER TABLE tasks ADD COLUMN import_project_id INTEGER",
        "ALTER TABLE tasks ADD COLUMN import_name TEXT",
        "ALTER TABLE tasks ADD COLUMN import_profile TEXT",
        "ALTER TABLE tasks ADD COLUMN import_params TEXT",
        "ALTER TABLE tasks ADD COLUMN package_file TEXT",
        "ALTER TABLE tasks ADD COLUMN import_migration_id INTEGER",
        "ALTER TABLE tasks ADD COLUMN import_sent INTEGER NOT NULL DEFAULT 0"
        " CHECK (import_sent IN (0, 1))",
    ),
    # 6: when a listing of this journal's showed a pending task's name absent, the run then
    # stopped before its create (a spent daily quota): a rerun creates it with no listing first
    ("ALTER TABLE tasks ADD COLUMN listed_at REAL",),
)
