"""Partners of a program (shops, brands) and what attributes transactions to them.

A transaction's own `partner` wins; otherwise its lines are attributed through the partner's
products (sku) and categories. Statements and the portal read sums over ledger entries that
carry the partner.
"""

from decimal import Decimal

from django.db import models


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
    prepaid_points_balance = models.BigIntegerField(default=0)
    prepaid_alert_threshold = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "program"], name="partner_program_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.partner.code} in {self.program.code}"


class PartnerProduct(models.Model):
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.sku


class PartnerCategory(models.Model):
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="categories")
    category = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["category"]
        verbose_name_plural = "partner categories"

    def __str__(self) -> str:
        return self.category
