from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DeskConfig(AppConfig):
    name = "smsdesk.desk"
    label = "desk"
    verbose_name = "Support desk"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
        from .search import restore_sqlite_triggers

        # A migration that rebuilds a SQLite table drops its search triggers.
        post_migrate.connect(restore_sqlite_triggers, sender=self)
