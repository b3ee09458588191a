"""A migration step of raw SQL written for each database, as the search indexes need.

Not a migration itself: Django skips modules whose names start with "_".
"""

from collections.abc import Sequence

from django.db import migrations

# Per vendor: the statements forward, and the statements backward.
Statements = dict[str, tuple[Sequence[str], Sequence[str]]]


def run_sql_by_vendor(statements: Statements) -> migrations.RunPython:
    """Each database runs its own statements; any other runs none (search then scans)."""

    def run(schema_editor, backward: bool) -> None:
        forward_sql, backward_sql = statements.get(schema_editor.connection.vendor, ([], []))
        for sql in backward_sql if backward else forward_sql:
            schema_editor.execute(sql, params=None)

    return migrations.RunPython(
        lambda apps, schema_editor: run(schema_editor, backward=False),
        lambda apps, schema_editor: run(schema_editor, backward=True),
        elidable=False,
    )
