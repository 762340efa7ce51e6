"""Programs and their point currencies: what every other model belongs to.

A currency's amounts are integers of its smallest unit (`Currency.decimals`); money is Decimal.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q


class Program(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        CLOSED = "closed"

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA name; every date rule uses it."
    )
    currency = models.CharField(
        max_length=3,
        default="EUR",
        validators=[RegexValidator(r"^[A-Z]{3}$", "An ISO 4217 code such as EUR.")],
        help_text="ISO 4217 money currency of the program.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    max_adjustment_points = models.DecimalField(
        max_digits=18,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="The largest manual adjustment, credit or debit, in points of its currency, "
        "whoever makes it (admin, API, import). Empty: no ceiling.",
    )
    approval_threshold_points = models.DecimalField(
        max_digits=18,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Adjustments made in the admin above this many points wait for a second "
        "manager's approval before they post. Empty: none wait.",
    )
    tier_override_needs_approval = models.BooleanField(
        default=False,
        db_default=False,  # rows written by code that predates it (migrations' historical models)
        help_text="Manual tier changes made in the admin wait for a second manager's approval.",
    )
    max_promotions_per_transaction = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="At most this many promotions reward one transaction (highest priority "
        "first); empty: no maximum.",
    )
    config_version = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Changes whenever what posting reads of the program's configuration changes "
        "(rules, currencies, tiers, partner products and categories, prepaid terms, "
        "promotions): set by database triggers (migration 0022), never by code, so that "
        "posting's per-process cache of that configuration knows when it is stale.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from django.core.exceptions import ValidationError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError(
                {"timezone": f"Unknown IANA timezone {self.timezone!r}."}
            ) from exc


class Currency(models.Model):
    """A program's point currency. Amounts of it are stored as integers of its smallest unit."""

    class Kind(models.TextChoices):
        NON_QUALIFYING = "non_qualifying", "Non-qualifying (redeemable)"
        QUALIFYING = "qualifying", "Qualifying (tier points)"

    class ExpiryPolicy(models.TextChoices):
        NONE = "none"
        ROLLING = "rolling"
        FIXED = "fixed"
        INACTIVITY = "inactivity"

    class RoundTo(models.TextChoices):
        NONE = "none"
        END_OF_MONTH = "end_of_month"
        END_OF_YEAR = "end_of_year"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="currencies")
    code = models.CharField(max_length=20, validators=[RegexValidator(r"^[A-Za-z0-9_-]+$")])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.NON_QUALIFYING)
    decimals = models.PositiveSmallIntegerField(default=0, validators=[MinValueValidator(0)])
    point_value = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("0"),
        help_text="Money value of one point, in the program's currency.",
    )
    redeemable = models.BooleanField(default=True)
    allow_debt = models.BooleanField(
        default=True,
        help_text="Reversals that find too few points leave a debt; if off, the rest is "
        "written off.",
    )
    escrow_days = models.PositiveIntegerField(default=0)
    expiry_policy = models.CharField(
        max_length=12, choices=ExpiryPolicy.choices, default=ExpiryPolicy.NONE
    )
    expiry_months = models.PositiveIntegerField(
        null=True, blank=True, help_text="rolling and inactivity policies"
    )
    expiry_round_to = models.CharField(
        max_length=12, choices=RoundTo.choices, default=RoundTo.NONE, help_text="rolling policy"
    )
    expiry_month = models.PositiveSmallIntegerField(null=True, blank=True, help_text="fixed policy")
    expiry_day = models.PositiveSmallIntegerField(null=True, blank=True, help_text="fixed policy")
    expiry_years_after = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="fixed policy"
    )

    class Meta:
        ordering = ["program", "code"]
        verbose_name_plural = "currencies"
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="currency_code_unique"),
            models.CheckConstraint(
                condition=~Q(kind="qualifying") | Q(redeemable=False),
                name="qualifying_currency_not_redeemable",
            ),
            models.CheckConstraint(condition=Q(decimals__lte=6), name="currency_decimals_max_6"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.program.code})"

    @property
    def scale(self) -> int:
        return 10**self.decimals

    def display(self, units: int) -> Decimal:
        """Smallest units as the member reads them (1250 -> 12.50 with two decimals)."""
        return (Decimal(units) / self.scale).quantize(Decimal(1).scaleb(-self.decimals))

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors = {}
        if self.kind == self.Kind.QUALIFYING and self.redeemable:
            errors["redeemable"] = "Qualifying points are for tier status and never redeemable."
        needs_months = (self.ExpiryPolicy.ROLLING, self.ExpiryPolicy.INACTIVITY)
        if self.expiry_policy in needs_months and not self.expiry_months:
            errors["expiry_months"] = f"The {self.expiry_policy} policy needs months."
        if self.expiry_policy == self.ExpiryPolicy.FIXED:
            for field in ("expiry_month", "expiry_day", "expiry_years_after"):
                if getattr(self, field) is None:
                    errors[field] = "The fixed policy needs month, day and years_after."
        if errors:
            raise ValidationError(errors)


class StaffProgramAccess(models.Model):
    """Limits a staff user to some programs. With this row, the admin lists and opens only the
    data of `programs` and the API (in the user's session) answers only for them; without it
    the user works on every program, as superusers always do."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="program_access"
    )
    programs = models.ManyToManyField(Program, blank=True, related_name="+")

    class Meta:
        verbose_name = "program access"
        verbose_name_plural = "program access"

    def __str__(self) -> str:
        return f"{self.user} on {', '.join(p.code for p in self.programs.all()) or 'no program'}"
