"""Earning rules stored as data; `loyalty.rules` interprets their conditions and awards."""

from django.db import models

from loyalty.models.programs import Program


class EarningRule(models.Model):
    """An earning rule as data: conditions and an award, interpreted by `loyalty.rules`."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        INACTIVE = "inactive"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="earning_rules")
    code = models.SlugField(max_length=50)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    active_from = models.DateTimeField(null=True, blank=True)
    active_to = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    exclusive = models.BooleanField(
        default=False, help_text="When it matches, rules of lower priority for its currency stop."
    )
    conditions = models.JSONField(default=dict, blank=True)
    award = models.JSONField(default=dict)
    escrow_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the currency's escrow days."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "-priority", "code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "code"], name="earning_rule_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from loyalty.rules import RuleDefinitionError, validate_rule_definition

        try:
            validate_rule_definition(self.conditions, self.award)
        except RuleDefinitionError as exc:
            raise ValidationError({exc.field: exc.message}) from exc
