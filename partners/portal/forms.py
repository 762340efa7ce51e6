"""Forms of the partner portal: its login and password reset (Django's, limited to partner
users) and the transaction list's filters (shape only; the reads are in selectors)."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm

from loyalty.models import Transaction
from partners.models import PartnerUser


def _is_partner_user(user) -> bool:
    return PartnerUser.objects.filter(user_id=user.pk).exists()


class PortalAuthenticationForm(AuthenticationForm):
    """Django's login form (through the authentication backends, so django-axes counts every
    failure), refusing accounts that are not partner users with the same message as a wrong
    password: the portal login tells nobody which usernames exist in the back office."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not _is_partner_user(user):
            raise self.get_invalid_login_error()


class PortalPasswordResetForm(PasswordResetForm):
    """Sends reset links to partner users only (never to back-office accounts), including
    those who have no password yet (created without one): the link is how they choose it."""

    def get_users(self, email):
        email_field = get_user_model().get_email_field_name()
        return (
            user
            for user in get_user_model()
            ._default_manager.filter(
                **{f"{email_field}__iexact": email},
                is_active=True,
                partner_user__isnull=False,
            )
            .select_related("partner_user")
        )


TYPE_CHOICES = [("", "All types"), *Transaction.Type.choices]


class TransactionFilterForm(forms.Form):
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    type = forms.ChoiceField(required=False, choices=TYPE_CHOICES)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned
