"""Admin forms: shape validation only. Business rules stay in the services the admin calls;
their refusals (`LoyaltyError`) come back onto these forms through `ServiceErrorMixin`."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from loyalty.exceptions import LoyaltyError
from loyalty.models import Benefit, Currency, EarningRule, Member, Program, Tier, Transaction
from loyalty.rules import WEEKDAYS, RuleDefinitionError, validate_rule_definition
from loyalty.services.members import PROFILE_FIELDS
from loyalty.services.requests import ACCRUAL_SUBTYPES

# Subtypes a rule can select (an opening balance carries its points, no rule runs on it).
RULE_SUBTYPES = [
    s for s in Transaction.Subtype.values if s in ACCRUAL_SUBTYPES and s != "opening_balance"
]


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


ATTRIBUTES_SHOWN_DEPTH = 32


def json_too_deep(value, limit: int = ATTRIBUTES_SHOWN_DEPTH) -> bool:
    """Whether a JSON value nests deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


class MemberChangeForm(ServiceErrorMixin, forms.ModelForm):
    """Profile edits, saved through `member_update` (numbers, dates and points are read-only)."""

    class Meta:
        model = Member
        fields = list(PROFILE_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields.get("attributes")
        if field is not None and self.instance.pk and json_too_deep(self.instance.attributes):
            # Stored before attributes were bounded: too deep to show or edit here without
            # breaking the page. Kept as they are; the API's bounds apply to new values.
            field.disabled = True
            field.prepare_value = lambda value: (
                f"(not shown: nested deeper than {ATTRIBUTES_SHOWN_DEPTH} levels)"
            )
            field.help_text = "Stored before attributes were bounded; replace them through the API."

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


def _split_list(value: str) -> list[str]:
    """ "a, b\nc" -> ["a", "b", "c"]: list conditions are typed as comma- or line-separated."""
    return [
        item.strip() for chunk in value.splitlines() for item in chunk.split(",") if item.strip()
    ]


def _plain(value: Decimal | None) -> str | None:
    """A decimal as the rule JSON stores it: a string, as typed ("0.02", "1.00", "100")."""
    if value is None:
        return None
    return format(value, "f")


def _attribute_lines(attributes: dict) -> str:
    return "\n".join(f"{key}={json.dumps(value)}" for key, value in attributes.items())


# The rule's fields the form takes as they are (the program is fixed once the rule exists).
RULE_MODEL_FIELDS = (
    "code",
    "name",
    "description",
    "active_from",
    "active_to",
    "priority",
    "exclusive",
    "escrow_days",
)


class ListField(forms.CharField):
    """A list of codes typed as comma- or line-separated text."""

    widget = forms.TextInput(attrs={"class": "vTextField"})

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value) -> list[str]:
        return _split_list(super().to_python(value) or "")


class EarningRuleForm(ServiceErrorMixin, forms.ModelForm):
    """An earning rule with a field per condition and per award setting; the JSON the engine
    reads is built from them (`definition()`), and the engine's `validate_rule_definition`
    (again in `earning_rule_create`/`_update`) reports on the field that holds the mistake.
    The status is not edited here: a new rule is a draft, activated from its page."""

    CONDITION_FIELDS = {
        "subtypes": "subtypes",
        "events": "events",
        "channels": "channels",
        "partners": "partners",
        "skus": "skus",
        "categories": "categories",
        "min_amount": "min_amount",
        "tiers": "tiers",
        "segments": "segments",
        "weekdays": "weekdays",
        "attributes": "attributes",
    }
    AWARD_FIELDS = {
        "type": "award_type",
        "currency": "award_currency",
        "points": "award_points",
        "per": "award_per",
        "rounding": "award_rounding",
        "factor": "award_factor",
        "max_points_per_transaction": "max_points_per_transaction",
        "max_per_member_per_day": "max_per_member_per_day",
        "max_per_member_per_month": "max_per_member_per_month",
    }

    # -- conditions (every one given must hold) -----------------------------------------
    subtypes = forms.MultipleChoiceField(
        choices=[(s, s.replace("_", " ")) for s in RULE_SUBTYPES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: any subtype.",
    )
    events = ListField(help_text="Engagement events, e.g. review_posted, app_login.")
    channels = forms.MultipleChoiceField(
        choices=Transaction.Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: any channel.",
    )
    partners = ListField(help_text="Partner codes, comma-separated.")
    skus = ListField(help_text="A line matches if its sku or its category is listed.")
    categories = ListField(help_text="The award is then computed on the matching lines only.")
    min_amount = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=14,
        decimal_places=2,
        help_text="Money amount (of the matching lines, if any) the transaction must reach.",
    )
    tiers = ListField(help_text="Tier codes: the member holds one of them now.")
    segments = ListField(help_text="Segments: the member is in one of them now.")
    weekdays = forms.MultipleChoiceField(
        choices=[(d, d.title()) for d in WEEKDAYS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="In the program's timezone. None ticked: any day.",
    )
    attributes = forms.CharField(
        label="Member attributes equal",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text='One per line: key=value, the value as JSON (newsletter=true, plan="gold", '
        "age=30); an unquoted word is text.",
    )

    # -- award ---------------------------------------------------------------------------
    award_type = forms.ChoiceField(
        label="Award",
        choices=[
            ("per_amount", "Per amount: points for every 'per' of money"),
            ("fixed", "Fixed: a number of points"),
            ("multiplier", "Multiplier: more of what the other rules gave"),
        ],
        widget=forms.RadioSelect,
        initial="per_amount",
    )
    award_currency = forms.ChoiceField(label="Currency", choices=())
    award_points = forms.DecimalField(
        label="Points",
        required=False,
        max_digits=18,
        decimal_places=6,
        help_text="Per amount and fixed awards, in currency units (0.02 of a cashback currency).",
    )
    award_per = forms.DecimalField(
        label="Per",
        required=False,
        max_digits=14,
        decimal_places=2,
        help_text="Per amount: the money the points are given for (1.00).",
    )
    award_factor = forms.DecimalField(
        label="Factor",
        required=False,
        max_digits=8,
        decimal_places=4,
        help_text="Multiplier: 2 doubles the base points, 1.5 adds half of them.",
    )
    award_rounding = forms.ChoiceField(
        label="Rounding",
        choices=[("down", "down"), ("half_up", "half up"), ("up", "up")],
        initial="down",
        help_text="To the currency's smallest unit (per amount and multiplier).",
    )
    max_points_per_transaction = forms.DecimalField(
        required=False,
        max_digits=18,
        decimal_places=6,
        help_text="Cap of one transaction's award, in currency units.",
    )
    max_per_member_per_day = forms.IntegerField(
        required=False, min_value=1, help_text="Awards of this rule per member per local day."
    )
    max_per_member_per_month = forms.IntegerField(
        required=False, min_value=1, help_text="Awards of this rule per member per local month."
    )

    # Errors the engine and the service name by their path in the JSON.
    service_field_names = {
        **{f"conditions.{key}": name for key, name in CONDITION_FIELDS.items()},
        **{f"award.{key}": name for key, name in AWARD_FIELDS.items()},
    }

    class Meta:
        model = EarningRule
        fields = ["program", *RULE_MODEL_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rule = self.instance
        program_id = rule.program_id or self.initial.get("program") or self.data.get("program")
        currencies = Currency.objects.filter(program__status=Program.Status.ACTIVE)
        if program_id and str(program_id).isdigit():
            currencies = Currency.objects.filter(program_id=program_id)
        labels: dict[str, str] = {}
        for currency in currencies.select_related("program").order_by("code", "program__code"):
            labels.setdefault(currency.code, f"{currency.code} – {currency.name}")
        self.fields["award_currency"].choices = [("", "---------"), *labels.items()]
        if "program" in self.fields:
            self.fields["program"].queryset = Program.objects.filter(status=Program.Status.ACTIVE)
        if rule.pk is not None:
            self._initial_from_definition(rule.conditions or {}, rule.award or {})

    def _initial_from_definition(self, conditions: dict, award: dict) -> None:
        for key, name in self.CONDITION_FIELDS.items():
            value = conditions.get(key)
            if value in (None, "", [], {}):
                continue
            if key == "attributes":
                value = _attribute_lines(value)
            elif key == "weekdays":
                value = [
                    WEEKDAYS[d - 1] if isinstance(d, int) else str(d).lower()[:3] for d in value
                ]
            self.initial.setdefault(name, value)
        for key, name in self.AWARD_FIELDS.items():
            if award.get(key) is not None:
                self.initial.setdefault(name, award[key])

    def clean_attributes(self) -> dict:
        attributes = {}
        for number, line in enumerate(self.cleaned_data["attributes"].splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, raw = line.partition("=")
            if not sep or not key.strip():
                raise ValidationError(f"Line {number}: write key=value.")
            raw = raw.strip()
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            attributes[key.strip()] = value
        return attributes

    def clean(self):
        data = super().clean()
        kind = data.get("award_type")
        needed = {
            "per_amount": ("award_points", "award_per"),
            "fixed": ("award_points",),
            "multiplier": ("award_factor",),
        }.get(kind, ())
        for name in needed:
            if data.get(name) is None and name not in self.errors:
                self.add_error(name, f"Required for a {kind.replace('_', ' ')} award.")
        if self.errors:
            return data
        conditions, award = self.definition()
        try:
            validate_rule_definition(conditions, award)
        except RuleDefinitionError as exc:
            field = self.service_field_names.get(exc.field)
            self.add_error(field if field in self.fields else None, exc.message)
        else:
            # The model's own check (EarningRule.clean) then sees the definition being saved.
            self.instance.conditions, self.instance.award = conditions, award
        return data

    def definition(self) -> tuple[dict, dict]:
        """(conditions, award) as the engine reads them, from the cleaned fields; empty
        conditions and award settings that do not apply to the type are left out."""
        data = self.cleaned_data
        conditions: dict = {}
        for key, name in self.CONDITION_FIELDS.items():
            value = data.get(name)
            if key == "min_amount":
                value = _plain(value)
            if value not in (None, "", [], {}):
                conditions[key] = list(value) if isinstance(value, list | tuple) else value
        kind = data.get("award_type")
        award: dict = {"type": kind, "currency": data.get("award_currency")}
        if kind in ("per_amount", "fixed"):
            award["points"] = _plain(data.get("award_points"))
        if kind == "per_amount":
            award["per"] = _plain(data.get("award_per"))
        if kind == "multiplier":
            award["factor"] = _plain(data.get("award_factor"))
        if kind != "fixed":
            award["rounding"] = data.get("award_rounding") or "down"
        cap = _plain(data.get("max_points_per_transaction"))
        if cap is not None:
            award["max_points_per_transaction"] = cap
        for key in ("max_per_member_per_day", "max_per_member_per_month"):
            if data.get(key) is not None:
                award[key] = data[key]
        return conditions, award

    def rule_fields(self) -> dict:
        """Keyword arguments of `earning_rule_create` / `earning_rule_update`."""
        conditions, award = self.definition()
        data = self.cleaned_data
        return {
            **{name: data[name] for name in RULE_MODEL_FIELDS if name in data},
            "conditions": conditions,
            "award": award,
        }

    def _update_errors(self, errors: ValidationError) -> None:
        """The model's errors name JSON paths ("award.per"): put them on the field."""
        if hasattr(errors, "error_dict"):
            remapped: dict[str, list] = {}
            for key, error_list in errors.error_dict.items():
                if key.split(".")[0] in ("conditions", "award") and self._errors:
                    continue  # the fields were refused already; the JSON was never built
                field = self.service_field_names.get(key, key)
                if key == NON_FIELD_ERRORS and "code" in self.fields:
                    # The program's codes are unique: the one constraint of the form's own.
                    unique = [e for e in error_list if e.code == "unique_together"]
                    if unique:
                        remapped.setdefault("code", []).extend(unique)
                        error_list = [e for e in error_list if e not in unique]
                if field not in self.fields:
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
    """Set a member's tier by hand, with a validity and a reason: `member_tier_set` decides."""

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


# --- earning rule pages: simulate and what-if --------------------------------------------


class SimulationForm(forms.Form):
    """A sample accrual to try a rule on: what the member would earn if the rule were active.
    The lines come from `SimulationLineFormSet`."""

    member = forms.CharField(max_length=50, help_text="Membership number of the program.")
    subtype = forms.ChoiceField(choices=[(s, s.replace("_", " ")) for s in RULE_SUBTYPES])
    event = forms.CharField(
        max_length=50, required=False, help_text="Engagements only (review_posted)."
    )
    amount = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=14,
        decimal_places=2,
        help_text="Leave empty to use the sum of the lines.",
    )
    channel = forms.ChoiceField(choices=[("", "---------"), *Transaction.Channel.choices])
    partner = forms.CharField(max_length=50, required=False, help_text="Partner code.")
    occurred_at = forms.DateTimeField(
        help_text="YYYY-MM-DD HH:MM, in the program's timezone; the rule's window and weekdays "
        "apply to it."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].required = False


class SimulationLineForm(forms.Form):
    sku = forms.CharField(max_length=100, required=False)
    category = forms.CharField(max_length=100, required=False)
    quantity = forms.DecimalField(min_value=Decimal("0.001"), max_digits=12, decimal_places=3)
    unit_price = forms.DecimalField(min_value=0, max_digits=14, decimal_places=2)


SimulationLineFormSet = forms.formset_factory(SimulationLineForm, extra=3, max_num=50)


class WhatIfForm(forms.Form):
    """A past window of days (program-local) to replay a rule over."""

    start = forms.DateField(help_text="First day (YYYY-MM-DD), in the program's timezone.")
    end = forms.DateField(help_text="Last day, included.")
    include_existing = forms.BooleanField(
        required=False,
        initial=True,
        label="With the active rules",
        help_text="Run it together with the active rules, so priority and exclusivity "
        "interact as they would (unticked: the rule alone).",
    )

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The last day comes before the first.")
        return data
