from django.urls import path

from . import views

app_name = "desk"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("tickets/<str:ref>", views.ticket, name="ticket"),
    path("tickets/<str:ref>/reply", views.reply, name="reply"),
    path("tickets/<str:ref>/close", views.close, name="close"),
    path("tickets/<str:ref>/reopen", views.reopen, name="reopen"),
]
