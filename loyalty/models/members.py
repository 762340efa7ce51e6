"""Members and the record of who changed them (enrolment, updates, merges, erasure)."""

from django.db import models
from django.db.models import F
from django.db.models.functions import Upper

from loyalty.models.programs import Program


class Member(models.Model):
    class Type(models.TextChoices):
        INDIVIDUAL = "individual"
        CORPORATE = "corporate"

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"
        SUSPENDED = "suspended"
        CLOSED = "closed"

    # Checked once per statement by a trigger (migration 0029): one look-up per distinct
    # program of an insert; a program with members refuses DELETE.
    program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        related_name="members",
        db_index=False,
        db_constraint=False,
    )
    membership_number = models.CharField(max_length=40)
    type = models.CharField(max_length=12, choices=Type.choices, default=Type.INDIVIDUAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    company_name = models.CharField(max_length=200, blank=True)
    tax_id = models.CharField(max_length=50, blank=True)
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    locale = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True)
    consent_email = models.BooleanField(default=False)
    consent_sms = models.BooleanField(default=False)
    consent_push = models.BooleanField(default=False)
    enrolled_at = models.DateTimeField()
    enrollment_channel = models.CharField(max_length=20, blank=True)
    # Unique by a constraint (`member_referral_code_unique`), not `unique=True`, which
    # also makes a second index for LIKE queries that no query runs (docs/decisions.md).
    referral_code = models.CharField(max_length=20)
    referred_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="referrals",
        db_index=False,  # a partial index below: most members were referred by no one
    )
    attributes = models.JSONField(default=dict, blank=True)
    # Last qualifying activity (processed purchase or engagement): drives inactivity expiry.
    last_activity_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="merged_members",
        db_index=False,  # a partial index below: most members were never merged
    )
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-enrolled_at"]
        permissions = [("export_member", "Can export a member's personal data (GDPR)")]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "membership_number"], name="member_number_unique"
            ),
            models.UniqueConstraint(fields=["referral_code"], name="member_referral_code_unique"),
        ]
        indexes = [
            # The API's `?email=` (`iexact`, which PostgreSQL compares as UPPER(email)).
            # A plain (program, email) index served no query (migration 0027).
            models.Index(F("program"), Upper("email"), name="member_email_upper"),
            # The filters by status (API, admin, segments) look for the few members who
            # are not active; the active ones are found by a scan anyway, and an index
            # entry per active member is written for nothing (migration 0027).
            models.Index(
                fields=["program", "status"],
                condition=~models.Q(status="active"),
                name="member_status_not_active",
            ),
            # Only the rows that have one: an index of NULLs is written for every member
            # enrolled and read by no query (docs/decisions.md).
            models.Index(
                fields=["referred_by"],
                condition=models.Q(referred_by__isnull=False),
                name="member_referred_by",
            ),
            models.Index(
                fields=["merged_into"],
                condition=models.Q(merged_into__isnull=False),
                name="member_merged_into",
            ),
        ]

    def __str__(self) -> str:
        name = self.display_name
        return f"{self.membership_number} {name}".strip()

    @property
    def display_name(self) -> str:
        if self.type == self.Type.CORPORATE and self.company_name:
            return self.company_name
        return f"{self.first_name} {self.last_name}".strip()


class MemberChange(models.Model):
    """Who changed a member, and how: one row per enrolment, profile update, merge and
    erasure, written in the database transaction of the change; and who exported the
    member's personal data (`exported`, no field changed).

    It names the fields changed, never their values, so an erasure leaves no personal data
    behind here either. A full history of values is another matter (a later audit log).
    """

    class Action(models.TextChoices):
        ENROLLED = "enrolled"
        UPDATED = "updated"
        MERGED = "merged"  # the survivor: a duplicate was merged into it
        MERGED_INTO = "merged_into"  # the duplicate, closed
        ERASED = "erased"
        EXPORTED = "exported"  # a copy of its personal data was taken (GDPR access request)

    # The member's program (`member` says it already): no constraint nor index of its own,
    # which no query reads and every enrolment paid for (docs/decisions.md).
    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    # Both checked once per statement by a trigger (migration 0029): the member, of this
    # program; the other member exists. A member with journal rows refuses DELETE.
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        related_name="changes",
        db_index=False,
        db_constraint=False,
    )
    action = models.CharField(max_length=12, choices=Action.choices)
    actor = models.CharField(max_length=150, blank=True)
    fields = models.JSONField(default=list, blank=True, help_text="Names of the fields changed.")
    other_member = models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The other member of a merge.",
        db_index=False,  # a partial index below: only merges have one
        db_constraint=False,
    )
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["member", "-occurred_at"]),
            models.Index(
                fields=["other_member"],
                condition=models.Q(other_member__isnull=False),
                name="member_change_other_member",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.member.membership_number} by {self.actor or '?'}"
