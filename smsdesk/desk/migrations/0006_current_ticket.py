"""One *current* ticket per contact instead of one open ticket.

Splitting and merging (and quoting an older ticket's ref) can leave a
contact with several open tickets; new texts go to the current one.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Max


def mark_current(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Each contact's open ticket, else their newest, becomes current."""
    Ticket = apps.get_model("desk", "Ticket")
    chosen = set(Ticket.objects.filter(status="open").values_list("pk", flat=True))
    with_open = set(Ticket.objects.filter(status="open").values_list("contact_id", flat=True))
    newest = (
        Ticket.objects.exclude(contact_id__in=with_open)
        .values("contact_id")
        .annotate(newest=Max("pk"))
        .values_list("newest", flat=True)
    )
    chosen.update(newest)
    Ticket.objects.filter(pk__in=chosen).update(current=True)


class Migration(migrations.Migration):
    dependencies = [("desk", "0005_opt_out")]

    operations = [
        migrations.RemoveConstraint(model_name="ticket", name="one_open_ticket_per_contact"),
        migrations.AddField(
            model_name="ticket", name="current", field=models.BooleanField(default=False)
        ),
        migrations.RunPython(mark_current, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="ticket", name="current", field=models.BooleanField(default=True)
        ),
        migrations.AddField(
            model_name="ticket",
            name="merged_into",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="desk.ticket",
            ),
        ),
        migrations.AddConstraint(
            model_name="ticket",
            constraint=models.UniqueConstraint(
                condition=models.Q(("current", True)),
                fields=("contact",),
                name="one_current_ticket_per_contact",
            ),
        ),
    ]
