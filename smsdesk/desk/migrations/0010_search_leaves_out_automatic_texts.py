"""Search indexes hold what people wrote, not the desk's automatic texts.

A confirmation (or the answer to STOP, START or HELP) has the same words in
every ticket: "customer support" found them all. And on PostgreSQL each
confirmation entered the trigram index three times (queued, claimed, sent:
none of those updates can be HOT), a sixth of what the worker cost the
database per text (docs/performance.md).

PostgreSQL: the message index becomes partial, `purpose = ''`. SQLite: the
triggers skip such rows, and the index is refilled from the rows already
stored without them.
"""

from importlib import import_module

from django.db import migrations

from ._vendor_sql import run_sql_by_vendor

POSTGRES_FORWARD = [
    "DROP INDEX IF EXISTS desk_message_body_trgm",
    "CREATE INDEX desk_message_body_trgm ON desk_message"
    " USING gin (UPPER(body) gin_trgm_ops) WHERE purpose = ''",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS desk_message_body_trgm",
    "CREATE INDEX desk_message_body_trgm ON desk_message USING gin (UPPER(body) gin_trgm_ops)",
]

DROP_TRIGGERS = [
    "DROP TRIGGER IF EXISTS desk_message_fts_insert",
    "DROP TRIGGER IF EXISTS desk_message_fts_delete",
    "DROP TRIGGER IF EXISTS desk_message_fts_update",
]
SQLITE_FORWARD = [
    *DROP_TRIGGERS,
    "CREATE TRIGGER desk_message_fts_insert AFTER INSERT ON desk_message"
    " WHEN new.purpose = '' BEGIN"
    " INSERT INTO desk_message_fts (rowid, body) VALUES (new.id, new.body);"
    " END",
    "CREATE TRIGGER desk_message_fts_delete AFTER DELETE ON desk_message"
    " WHEN old.purpose = '' BEGIN"
    " INSERT INTO desk_message_fts (desk_message_fts, rowid, body)"
    " VALUES ('delete', old.id, old.body);"
    " END",
    # An external-content index must be told exactly the rows it holds: a
    # 'delete' of a row it never took in would corrupt it.
    "CREATE TRIGGER desk_message_fts_update AFTER UPDATE OF body, purpose ON desk_message BEGIN"
    " INSERT INTO desk_message_fts (desk_message_fts, rowid, body)"
    " SELECT 'delete', old.id, old.body WHERE old.purpose = '';"
    " INSERT INTO desk_message_fts (rowid, body) SELECT new.id, new.body WHERE new.purpose = '';"
    " END",
    "INSERT INTO desk_message_fts (desk_message_fts) VALUES ('delete-all')",
    "INSERT INTO desk_message_fts (rowid, body) SELECT id, body FROM desk_message WHERE purpose = ''",
]
# Back to the triggers as migration 0004 made them, and an index of every row.
SEARCH_0004 = import_module("smsdesk.desk.migrations.0004_search")
SQLITE_BACKWARD = [
    *DROP_TRIGGERS,
    *(sql for sql in SEARCH_0004.SQLITE_FORWARD if sql.startswith("CREATE TRIGGER desk_message_")),
    "INSERT INTO desk_message_fts (desk_message_fts) VALUES ('rebuild')",
]

STATEMENTS = {
    "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


class Migration(migrations.Migration):
    dependencies = [
        ("desk", "0009_outbox_due_order"),
    ]

    operations = [run_sql_by_vendor(STATEMENTS)]
