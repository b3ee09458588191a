from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "smsdesk.live"
    default_auto_field = "django.db.models.BigAutoField"
