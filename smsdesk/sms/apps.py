from django.apps import AppConfig


class SmsConfig(AppConfig):
    name = "smsdesk.sms"
    label = "sms"
    verbose_name = "SMS journal"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
