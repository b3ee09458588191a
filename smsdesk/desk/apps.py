from django.apps import AppConfig


class DeskConfig(AppConfig):
    name = "smsdesk.desk"
    label = "desk"
    verbose_name = "Support desk"
