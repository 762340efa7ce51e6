"""Admin forms: shape validation only. Business rules stay in the services the admin calls;
their refusals (`LoyaltyError`) come back onto these forms through `ServiceErrorMixin`."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from loyalty.exceptions import LoyaltyError
from loyalty.models import Benefit, Currency, EarningRule, Member, Program, Tier
from loyalty.services.members import PROFILE_FIELDS


class ServiceErrorMixin:
    """Shows a service's refusal on the form that was submitted.

    The admin re-validates the submitted data with `service_error` set after the service
    refused it (its transaction rolled back), so the page comes back with the data and the
    message, the way a validation error would.
    """

    service_error: LoyaltyError | None = None
    # Service field names that are called differently on the form.
    service_field_names: dict[str, str] = {}

    def clean(self):
        cleaned_data = super().clean()
        if self.service_error is not None:
            add_service_error(self, self.service_error, self.service_field_names)
        return cleaned_data


def add_service_error(
    form: forms.BaseForm,
    error: LoyaltyError,
    field_names: dict[str, str] | None = None,
    *,
    message: bool = True,
) -> None:
    """The error's field messages on matching fields, and its message as a non-field error
    (unless `message` is False, when the page shows it as a message already)."""
    field_names = field_names or {}
    if message:
        form.add_error(None, error.message)
    for name, message in (error.fields or {}).items():
        name = field_names.get(name, name)
        if name in form.fields and name not in form.errors:
            form.add_error(name, str(message))


class MemberAddForm(ServiceErrorMixin, forms.ModelForm):
    """Enrolment: `loyalty.services.members.member_enrol` creates the member and posts the
    enrollment accrual. The membership number is generated when left empty."""

    referrer_code = forms.CharField(
        label="Referred with code",
        max_length=20,
        required=False,
        help_text="The referral code of the member who referred this one (optional).",
    )
    service_field_names = {"referral_code": "referrer_code"}

    class Meta:
        model = Member
        fields = [
            "program",
            "membership_number",
            "enrolled_at",
            *(f for f in PROFILE_FIELDS if f != "status"),
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = Program.objects.filter(status=Program.Status.ACTIVE)
        self.fields["membership_number"].required = False
        self.fields["membership_number"].help_text = "Leave empty to generate one."
        self.fields["enrolled_at"].required = False
        self.fields["enrolled_at"].help_text = "Leave empty for now."

    def enrolment_kwargs(self) -> dict:
        """Keyword arguments of `member_enrol` from the cleaned data."""
        data = self.cleaned_data
        return {
            "program": data["program"],
            "membership_number": data.get("membership_number") or "",
            "referral_code": data.get("referrer_code") or "",
            "enrolled_at": data.get("enrolled_at"),
            **{f: data[f] for f in PROFILE_FIELDS if f in data},
        }


class MemberChangeForm(ServiceErrorMixin, forms.ModelForm):
    """Profile edits, saved through `member_update` (numbers, dates and points are read-only)."""

    class Meta:
        model = Member
        fields = list(PROFILE_FIELDS)

    def profile_changes(self) -> dict:
        return {f: self.cleaned_data[f] for f in self.changed_data if f in PROFILE_FIELDS}


class CurrencyForm(forms.ModelForm):
    """A currency's `decimals` and `kind` are fixed once it exists: stored points are integers
    of its smallest unit, and qualifying points never become redeemable ones."""

    class Meta:
        model = Currency
        fields = [
            "program",
            "code",
            "name",
            "kind",
            "decimals",
            "point_value",
            "redeemable",
            "allow_debt",
            "escrow_days",
            "expiry_policy",
            "expiry_months",
            "expiry_round_to",
            "expiry_month",
            "expiry_day",
            "expiry_years_after",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for name in ("decimals", "kind"):
                if name in self.fields:
                    self.fields[name].disabled = True
                    self.fields[name].help_text = "Fixed once the currency exists."


class EarningRuleForm(forms.ModelForm):
    """Conditions and award as JSON, checked by `EarningRule.clean` (the rules engine's
    `validate_rule_definition`), whose errors name a path inside the JSON ("award.currency"):
    they are shown on the JSON field they belong to, prefixed with that path."""

    class Meta:
        model = EarningRule
        fields = [
            "program",
            "code",
            "name",
            "description",
            "status",
            "active_from",
            "active_to",
            "priority",
            "exclusive",
            "conditions",
            "award",
            "escrow_days",
        ]

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict"):
            remapped: dict[str, list] = {}
            for key, error_list in errors.error_dict.items():
                field = key.split(".", 1)[0]
                if field != key and field in self.fields:
                    error_list = [
                        ValidationError(f"{key}: {message}")
                        for error in error_list
                        for message in error.messages
                    ]
                elif field not in self.fields:
                    field = NON_FIELD_ERRORS
                remapped.setdefault(field, []).extend(error_list)
            errors = ValidationError(remapped)
        super()._update_errors(errors)


class PointsAdjustmentForm(forms.Form):
    """A manual credit (positive) or debit (negative) with a mandatory reason.

    `token` is drawn when the form is shown and becomes the external id of the adjustment,
    so submitting the same form twice posts once (the second post is an idempotent replay).
    """

    token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    currency = forms.ModelChoiceField(queryset=Currency.objects.none(), empty_label=None)
    points = forms.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text="In currency units (e.g. 12.50 for a cashback currency with 2 decimals). "
        "Negative to debit.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Mandatory; kept on the transaction and shown in the member's history.",
    )

    service_field_names = {"points_currency": "currency"}

    def __init__(self, *args, program: Program, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["currency"].queryset = program.currencies.order_by("code")
        self.fields["currency"].label_from_instance = lambda c: f"{c.code} – {c.name}"

    def clean_points(self) -> Decimal:
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("Enter a non-zero number of points (negative debits).")
        return points

    def external_id(self, member: Member | None = None) -> str:
        """One id per submitted form (and per member when several are adjusted at once)."""
        base = f"admin-adjust:{self.cleaned_data['token']}"
        return f"{base}:{member.membership_number}" if member is not None else base


class MergeForm(forms.Form):
    """Choose which of the selected members survives; the others are merged into it."""

    survivor = forms.ModelChoiceField(
        queryset=Member.objects.none(), widget=forms.RadioSelect, empty_label=None
    )

    def __init__(self, *args, members, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["survivor"].queryset = members


# --- tiers ---------------------------------------------------------------------------------


class TierInlineFormSet(forms.BaseInlineFormSet):
    """A group's tiers: one base tier (threshold 0) and distinct thresholds (the ladder)."""

    def clean(self):
        super().clean()
        thresholds = []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            threshold = form.cleaned_data.get("threshold")
            if threshold is None:
                continue
            if threshold in thresholds:
                form.add_error("threshold", "Another tier of the group has this threshold.")
            thresholds.append(threshold)
        if thresholds and 0 not in thresholds:
            raise ValidationError("The group needs a base tier with threshold 0.")
        if self.instance.pk is not None and not thresholds:
            raise ValidationError("A tier group needs at least its base tier (threshold 0).")


class BenefitForm(forms.ModelForm):
    class Meta:
        model = Benefit
        fields = [
            "program",
            "code",
            "name",
            "description",
            "kind",
            "value",
            "points_currency",
            "voucher_definition",
        ]


class MemberTierSetForm(forms.Form):
    """Set a member's tier by hand (SPEC §5 rule 7): `member_tier_set` decides."""

    tier = forms.ModelChoiceField(queryset=Tier.objects.none(), help_text="Group › tier.")
    valid_until = forms.DateField(
        required=False,
        help_text="Last day of validity (YYYY-MM-DD). Required above the base tier; the base "
        "tier never expires.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000)

    def __init__(self, *args, member: Member, **kwargs):
        super().__init__(*args, **kwargs)
        tiers = (
            Tier.objects.filter(group__program_id=member.program_id)
            .select_related("group")
            .order_by("group__code", "threshold")
        )
        self.fields["tier"].queryset = tiers
        self.fields["tier"].label_from_instance = lambda t: (
            f"{t.group.name} › {t.name} ({t.threshold})"
        )
