from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model

from smsdesk.lib.phone import InvalidNumber, is_phone_number, normalise_sender
from smsdesk.lib.segments import normalize_newlines

# Beyond this, providers split into so many parts that delivery gets unreliable
# (Twilio stops at 1,600 characters; MessageBird concatenates up to about 1,377).
MAX_SMS_CHARS = 1377
MAX_NOTE_CHARS = 5000


class SMSTextField(forms.CharField):
    """Text for an SMS, with line breaks as the agent's textarea held them.

    Browsers submit a textarea's line breaks as CR LF; stored as sent, each
    would cost the customer an extra character the composer did not count.
    """

    def to_python(self, value: Any) -> str:
        return normalize_newlines(str(super().to_python(value)))


def sms_body(label: str, placeholder: str) -> forms.CharField:
    return SMSTextField(
        label=label,
        max_length=MAX_SMS_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": placeholder, "data-sms-composer": ""}
        ),
        error_messages={"required": "Write something before sending."},
    )


class ReplyForm(forms.Form):
    body = sms_body("Reply", "Type a reply to send by SMS")
    # The newest message the agent had on screen: a reply by someone else
    # after it is a collision the agent should see before sending.
    seen = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=0)
    send_anyway = forms.BooleanField(required=False, widget=forms.HiddenInput)


class NoteForm(forms.Form):
    body = forms.CharField(
        label="Internal note",
        max_length=MAX_NOTE_CHARS,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Only agents see notes"}),
        error_messages={"required": "Write something before saving the note."},
    )


def agents() -> Any:
    return get_user_model().objects.filter(is_active=True).order_by("username")


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        queryset=agents(), required=False, empty_label="Nobody", label="Assignee"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Fresh per form: agents come and go while the process runs.
        self.fields["assignee"].queryset = agents()  # type: ignore[attr-defined]


class ContactForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, required=False, strip=True)


class NewConversationForm(forms.Form):
    phone = forms.CharField(
        label="Phone number",
        max_length=40,
        widget=forms.TextInput(
            attrs={"inputmode": "tel", "autocomplete": "off", "placeholder": "+31 6 1234 5678"}
        ),
    )
    name = forms.CharField(label="Name (optional)", max_length=100, required=False, strip=True)
    body = sms_body("Message", "The first text they will get from you")

    def clean_phone(self) -> str:
        raw = self.cleaned_data["phone"]
        try:
            phone = normalise_sender(raw, settings.SMSDESK_DEFAULT_REGION)
        except InvalidNumber:
            phone = ""
        if not is_phone_number(phone):
            hint = "with its country code, e.g. +31 6 1234 5678"
            if settings.SMSDESK_DEFAULT_REGION:
                hint += f", or a national number in {settings.SMSDESK_DEFAULT_REGION}"
            raise forms.ValidationError(f"“{raw}” is not a phone number: type it {hint}.")
        return phone


class SimulatorForm(forms.Form):
    phone = forms.CharField(label="Your number", max_length=32)
    text = forms.CharField(
        label="Message",
        max_length=MAX_SMS_CHARS,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": "Text message"}),
    )
