"""Partners of a program (shops, brands) and what attributes transactions to them.

A transaction's own `partner` wins; otherwise its lines are attributed through the partner's
products (sku) and categories, which are unique per program. Statements and the portal read
sums over ledger entries that carry the partner.

What the database guarantees here: a prepaid pack's balance never goes negative (CHECK, the
backstop of the conditional update that draws it); a top-up adds points; a draw is never zero;
there is at most one statement per partner, program and month, and a statement's lines are
written with it (closed statements are never updated by any service).
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class Partner(models.Model):
    class Kind(models.TextChoices):
        RETAILER = "retailer"
        BRAND = "brand"
        DISTRIBUTOR = "distributor"
        SERVICE = "service"

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.RETAILER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.EmailField(blank=True)
    contact_phone = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class PartnerProgram(models.Model):
    """A partner's participation in a program, with its commercial terms."""

    class Billing(models.TextChoices):
        POSTPAID = "postpaid"
        PREPAID = "prepaid"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="memberships")
    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="partner_terms"
    )
    fee_per_point_issued = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("0"),
        help_text="Money the partner pays the program per point issued at the partner.",
    )
    reimbursement_per_point_redeemed = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("0"),
        help_text="Money the program pays the partner per point redeemed at the partner.",
    )
    billing = models.CharField(max_length=10, choices=Billing.choices, default=Billing.POSTPAID)
    prepaid_points_balance = models.BigIntegerField(
        default=0,
        help_text="Points left in the prepaid pack (smallest units of the program's "
        "non-qualifying currencies). Changed by top-ups and draws only.",
    )
    prepaid_alert_threshold = models.BigIntegerField(
        default=0, help_text="An e-mail goes to the partner's contact when the pack falls under it."
    )
    prepaid_alert_sent = models.BooleanField(
        default=False,
        editable=False,
        help_text="The low-pack e-mail was sent; a top-up above the threshold re-arms it.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "program"], name="partner_program_unique"),
            models.CheckConstraint(
                condition=Q(prepaid_points_balance__gte=0), name="prepaid_points_balance_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(prepaid_alert_threshold__gte=0), name="prepaid_alert_threshold_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner.code} in {self.program.code}"

    @property
    def prepaid(self) -> bool:
        return self.billing == self.Billing.PREPAID

    @property
    def prepaid_low(self) -> bool:
        """A prepaid pack under its alert threshold (or empty)."""
        return self.prepaid and (
            self.prepaid_points_balance < self.prepaid_alert_threshold
            or self.prepaid_points_balance == 0
        )


class PartnerProduct(models.Model):
    """A sku that attributes transaction lines to its partner, in one program."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="partner_products"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=100)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["program", "sku"], name="partner_product_sku_unique"),
        ]

    def __str__(self) -> str:
        return self.sku


class PartnerCategory(models.Model):
    """A product category that attributes transaction lines to its partner, in one program."""

    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.CASCADE, related_name="partner_categories"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="categories")
    category = models.CharField(max_length=100)

    class Meta:
        ordering = ["category"]
        verbose_name_plural = "partner categories"
        constraints = [
            models.UniqueConstraint(fields=["program", "category"], name="partner_category_unique"),
        ]

    def __str__(self) -> str:
        return self.category


class PartnerUser(models.Model):
    """A login of the partner portal: a Django user who sees one partner's data, read-only.

    The user is never staff, so the admin refuses them (partner_user_create sees to it)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_user"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="users")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, help_text="Who created it.")

    class Meta:
        ordering = ["partner", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.partner.code})"


# --- prepaid packs ---------------------------------------------------------------------------


class PrepaidTopUp(models.Model):
    """Points bought into a partner's prepaid pack (written by `prepaid_topup` only)."""

    terms = models.ForeignKey(PartnerProgram, on_delete=models.PROTECT, related_name="topups")
    points = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    reference = models.CharField(max_length=200, help_text="Invoice or order number.")
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="prepaid_topup_positive"),
        ]

    def __str__(self) -> str:
        return f"+{self.points} for {self.terms_id} ({self.reference})"


class PrepaidDraw(models.Model):
    """Points a transaction drew from a prepaid pack (positive), or a return gave back
    (negative). Written with the ledger entries of that transaction, in its database
    transaction."""

    terms = models.ForeignKey(PartnerProgram, on_delete=models.PROTECT, related_name="draws")
    transaction = models.ForeignKey(
        "loyalty.Transaction", on_delete=models.PROTECT, related_name="prepaid_draws"
    )
    points = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="prepaid_draw_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} from {self.terms_id}"


# --- statements ------------------------------------------------------------------------------


class PartnerStatement(models.Model):
    """A partner's closed month in a program: what was attributed to it, what it owes.

    Built once (`partner_statements_build`) and never changed: entries that arrive for a month
    after its statement was closed appear on a later statement as corrections. `cutoff` is the
    instant up to which the statement read entries (by their creation time)."""

    class Status(models.TextChoices):
        CLOSED = "closed"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="statements")
    program = models.ForeignKey(
        "loyalty.Program", on_delete=models.PROTECT, related_name="partner_statements"
    )
    month = models.DateField(help_text="The first day of the month.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CLOSED)
    billing = models.CharField(max_length=10, choices=PartnerProgram.Billing.choices)
    cutoff = models.DateTimeField()
    money_currency = models.CharField(max_length=3)
    transactions = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    points_issued = models.BigIntegerField(default=0)
    points_returned = models.BigIntegerField(default=0)
    points_redeemed = models.BigIntegerField(default=0)
    prepaid_drawn = models.BigIntegerField(default=0)
    fees = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    reimbursements = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    joint_promotion_costs = models.DecimalField(
        max_digits=16, decimal_places=2, default=Decimal("0")
    )
    net_due = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Fees plus joint promotion costs minus reimbursements: positive, the "
        "partner pays the program; negative, the program pays the partner.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month", "partner__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "program", "month"], name="partner_statement_unique"
            ),
            models.CheckConstraint(condition=Q(month__day=1), name="partner_statement_month"),
        ]
        indexes = [models.Index(fields=["program", "month"])]

    def __str__(self) -> str:
        return f"{self.partner.code} {self.month:%Y-%m}"


class StatementLine(models.Model):
    """One figure of a statement: a kind, the month its entries occurred in (the statement's
    own month, or an earlier one for corrections), a points currency where it counts points."""

    class Kind(models.TextChoices):
        TRANSACTIONS = "transactions", "transactions attributed"
        POINTS_ISSUED = "points_issued", "points issued"
        POINTS_RETURNED = "points_returned", "points taken back by returns"
        POINTS_REDEEMED = "points_redeemed", "points redeemed"
        REDEMPTIONS_RETURNED = "redemptions_returned", "redemptions returned"
        JOINT_PROMOTION = "joint_promotion", "joint promotion cost"
        PREPAID_DRAWN = "prepaid_drawn", "prepaid pack drawn"
        FEES = "fees", "fees"
        REIMBURSEMENTS = "reimbursements", "reimbursements"

    statement = models.ForeignKey(PartnerStatement, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=24, choices=Kind.choices)
    period = models.DateField(help_text="The month the counted entries occurred in.")
    currency = models.ForeignKey(
        "loyalty.Currency", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promotion_code = models.CharField(max_length=50, blank=True)
    share_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    count = models.PositiveIntegerField(default=0)
    points = models.BigIntegerField(default=0)
    money = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    description = models.CharField(max_length=255)

    class Meta:
        ordering = ["statement", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "position"], name="statement_line_position_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.description

    @property
    def is_correction(self) -> bool:
        return self.period != self.statement.month
