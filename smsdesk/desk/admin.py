from __future__ import annotations

from django.contrib import admin

from .models import Contact, Message, Ticket


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin[Contact]):
    list_display = ["phone", "name", "opted_out_at", "created"]
    search_fields = ["phone", "name"]


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin[Ticket]):
    list_display = ["ref", "contact", "status", "assignee", "last_message_at"]
    list_filter = ["status"]
    search_fields = ["ref", "contact__phone"]
    raw_id_fields = ["contact"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin[Message]):
    list_display = ["id", "ticket", "direction", "status", "attempts", "created"]
    list_filter = ["direction", "status"]
    raw_id_fields = ["ticket", "event"]
