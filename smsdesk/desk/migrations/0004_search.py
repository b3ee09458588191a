"""Indexes for the inbox search (smsdesk.desk.search), one kind per database.

PostgreSQL: pg_trgm GIN indexes on the upper-cased message text and contact
name (Django's icontains is `UPPER(col) LIKE UPPER('%…%')`) and on the phone
number. CREATE INDEX reads the rows already stored.

SQLite: FTS5 trigram tables over the same columns, external-content (they
store only the index, the text stays in desk_message and desk_contact), kept
in step by triggers and filled from the stored rows by 'rebuild'.

Other databases get nothing: search then scans, slower but correct.
"""

from django.db import migrations

from ._vendor_sql import run_sql_by_vendor

POSTGRES_FORWARD = [
    # Needs a role that may create extensions (superuser, or trusted pg_trgm on
    # PostgreSQL 13+ for a database owner).
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX desk_message_body_trgm ON desk_message USING gin (UPPER(body) gin_trgm_ops)",
    "CREATE INDEX desk_contact_name_trgm ON desk_contact USING gin (UPPER(name) gin_trgm_ops)",
    "CREATE INDEX desk_contact_phone_trgm ON desk_contact USING gin (UPPER(phone) gin_trgm_ops)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS desk_contact_phone_trgm",
    "DROP INDEX IF EXISTS desk_contact_name_trgm",
    "DROP INDEX IF EXISTS desk_message_body_trgm",
    # The extension stays: something else may use it, and dropping it needs the same rights.
]

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE desk_message_fts USING fts5("
    " body, content='desk_message', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER desk_message_fts_insert AFTER INSERT ON desk_message BEGIN"
    " INSERT INTO desk_message_fts (rowid, body) VALUES (new.id, new.body);"
    " END",
    # An external-content table forgets a row by being told its old text.
    "CREATE TRIGGER desk_message_fts_delete AFTER DELETE ON desk_message BEGIN"
    " INSERT INTO desk_message_fts (desk_message_fts, rowid, body)"
    " VALUES ('delete', old.id, old.body);"
    " END",
    # OF body: the outbox's status updates leave the index alone.
    "CREATE TRIGGER desk_message_fts_update AFTER UPDATE OF body ON desk_message BEGIN"
    " INSERT INTO desk_message_fts (desk_message_fts, rowid, body)"
    " VALUES ('delete', old.id, old.body);"
    " INSERT INTO desk_message_fts (rowid, body) VALUES (new.id, new.body);"
    " END",
    "INSERT INTO desk_message_fts (desk_message_fts) VALUES ('rebuild')",
    "CREATE VIRTUAL TABLE desk_contact_fts USING fts5("
    " name, phone, content='desk_contact', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER desk_contact_fts_insert AFTER INSERT ON desk_contact BEGIN"
    " INSERT INTO desk_contact_fts (rowid, name, phone) VALUES (new.id, new.name, new.phone);"
    " END",
    "CREATE TRIGGER desk_contact_fts_delete AFTER DELETE ON desk_contact BEGIN"
    " INSERT INTO desk_contact_fts (desk_contact_fts, rowid, name, phone)"
    " VALUES ('delete', old.id, old.name, old.phone);"
    " END",
    "CREATE TRIGGER desk_contact_fts_update AFTER UPDATE OF name, phone ON desk_contact BEGIN"
    " INSERT INTO desk_contact_fts (desk_contact_fts, rowid, name, phone)"
    " VALUES ('delete', old.id, old.name, old.phone);"
    " INSERT INTO desk_contact_fts (rowid, name, phone) VALUES (new.id, new.name, new.phone);"
    " END",
    "INSERT INTO desk_contact_fts (desk_contact_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS desk_contact_fts_update",
    "DROP TRIGGER IF EXISTS desk_contact_fts_delete",
    "DROP TRIGGER IF EXISTS desk_contact_fts_insert",
    "DROP TABLE IF EXISTS desk_contact_fts",
    "DROP TRIGGER IF EXISTS desk_message_fts_update",
    "DROP TRIGGER IF EXISTS desk_message_fts_delete",
    "DROP TRIGGER IF EXISTS desk_message_fts_insert",
    "DROP TABLE IF EXISTS desk_message_fts",
]

STATEMENTS = {
    "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


class Migration(migrations.Migration):
    dependencies = [
        ("desk", "0003_agent_inbox"),
    ]

    operations = [run_sql_by_vendor(STATEMENTS)]
