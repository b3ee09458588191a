from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import InboundEvent


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin[InboundEvent]):
    list_display = ["id", "provider", "sender", "received_at", "processed_at", "error"]
    list_filter = ["provider", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["sender", "key", "text"]
    readonly_fields = [f.name for f in InboundEvent._meta.fields]
    actions = ["reprocess"]

    @admin.action(description="Re-process the selected failed events")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        count = queryset.filter(processed_at__isnull=True).exclude(error="").update(error="")
        self.message_user(
            request, f"Re-queued {count} event(s); the worker threads them within half a minute."
        )
