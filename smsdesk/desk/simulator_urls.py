from django.urls import path

from . import simulator

app_name = "simulator"
urlpatterns = [
    path("", simulator.phone, name="phone"),
    path("send", simulator.send, name="send"),
]
