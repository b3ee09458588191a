from __future__ import annotations

from django import forms

# Beyond this, providers split into so many parts that delivery gets unreliable
# (Twilio stops at 1,600 characters; MessageBird concatenates up to about 1,377).
MAX_SMS_CHARS = 1377


class ReplyForm(forms.Form):
    body = forms.CharField(
        label="Reply",
        max_length=MAX_SMS_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Type a reply to send by SMS", "data-sms-composer": ""}
        ),
        error_messages={"required": "Write something before sending."},
    )


class SimulatorForm(forms.Form):
    phone = forms.CharField(label="Your number", max_length=32)
    text = forms.CharField(
        label="Message",
        max_length=MAX_SMS_CHARS,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": "Text message"}),
    )
