from django.urls import path

from . import live_views, ticket_views, views

app_name = "desk"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("live", live_views.stream, name="live"),
    path("new", views.new_conversation, name="new"),
    path("tickets/<str:ref>", ticket_views.ticket, name="ticket"),
    path("tickets/<str:ref>/reply", ticket_views.reply, name="reply"),
    path("tickets/<str:ref>/note", ticket_views.note, name="note"),
    path("tickets/<str:ref>/assign", ticket_views.assign, name="assign"),
    path("tickets/<str:ref>/contact", ticket_views.contact, name="contact"),
    path("tickets/<str:ref>/split", ticket_views.split, name="split"),
    path("tickets/<str:ref>/resend", ticket_views.resend, name="resend"),
    path("tickets/<str:ref>/merge", ticket_views.merge, name="merge"),
    path("tickets/<str:ref>/close", ticket_views.close, name="close"),
    path("tickets/<str:ref>/reopen", ticket_views.reopen, name="reopen"),
]
