from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from smsdesk.desk import webhooks as receipts
from smsdesk.sms import views as webhooks

urlpatterns = [
    path("healthz", webhooks.healthz, name="healthz"),
    path("", RedirectView.as_view(pattern_name="desk:inbox", permanent=False)),
    # The sample's inbound path, and a provider-named alias; the token forms
    # are for Flow Builder setups that cannot sign their requests.
    path("webhook", webhooks.messagebird_inbound, name="webhook"),
    path("webhook/<str:token>", webhooks.messagebird_inbound, name="webhook-token"),
    path("webhooks/messagebird", webhooks.messagebird_inbound, name="webhook-messagebird"),
    # Before the token form below, which would take "status" for a token.
    path("webhooks/messagebird/status", receipts.messagebird_status, name="webhook-status"),
    path(
        "webhooks/messagebird/status/<str:token>",
        receipts.messagebird_status,
        name="webhook-status-token",
    ),
    path(
        "webhooks/messagebird/<str:token>",
        webhooks.messagebird_inbound,
        name="webhook-messagebird-token",
    ),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin", RedirectView.as_view(pattern_name="desk:inbox", permanent=False)),
    path("admin/", include("smsdesk.desk.urls")),
    path("simulator/", include("smsdesk.desk.simulator_urls")),
    path("django-admin/", admin.site.urls),
]
