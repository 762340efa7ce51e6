"""GDPR fixtures: a member with a history that touches every place personal data can land
(enrolment, tiers with a hand-written note, purchases with attributes, an adjustment whose
reason names the member, a refusal an import recorded, a birthday event, stored import files
and rejects files in CSV and XLSX), another member of the same program, and a search of
every text and JSON column of the project's tables for a value."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from loyalty.models import ImportJob, Member, Tier, TierGroup
from loyalty.services.events import EventType, member_event_record
from loyalty.services.imports.jobs import import_job_confirm, import_job_create
from loyalty.services.members import member_enrol
from loyalty.services.tiers import member_tier_set
from tests.loyalty.imports_helpers import csv_bytes, xlsx_bytes

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 12, tzinfo=UTC)
PROJECT_APPS = ("loyalty", "partners", "promotions", "vouchers", "reports")


@dataclass(frozen=True)
class Person:
    number: str
    email: str
    first_name: str
    last_name: str
    phone: str

    @property
    def values(self) -> tuple[str, ...]:
        """What must not survive an erasure, anywhere."""
        return (self.email, self.first_name, self.last_name, self.phone)


ZOFIA = Person("Z-100", "zofia.wrzosek@example.org", "Zofiaquinn", "Wrzosekova", "+48601234567")
OTTO = Person("O-200", "otto.brandvik@example.org", "Ottomarius", "Brandvikson", "+47555123456")


def text_columns(model) -> list[models.Field]:
    return [
        f
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
    ]


def database_hits(value: str) -> list[tuple[str, str, object]]:
    """(table, column, primary key) of every row of the project's tables whose text or JSON
    column holds `value` (case-insensitive): one query per column."""
    hits = []
    for label in PROJECT_APPS:
        for model in apps.get_app_config(label).get_models():
            for field in text_columns(model):
                queryset = model._default_manager.all()
                if isinstance(field, models.JSONField):
                    queryset = queryset.annotate(_text=Cast(field.name, TextField()))
                    condition = Q(_text__icontains=value)
                else:
                    condition = Q(**{f"{field.name}__icontains": value})
                for pk in queryset.filter(condition).values_list("pk", flat=True):
                    hits.append((model._meta.db_table, field.column, pk))
    return hits


def stored_files() -> dict[str, bytes]:
    """Every file the import jobs point at: `<job id>.<field>` -> its bytes."""
    files = {}
    for job in ImportJob.objects.order_by("pk"):
        for name in ("file", "preview_rejects", "rejects"):
            stored = getattr(job, name)
            if stored:
                with stored.storage.open(stored.name, "rb") as source:
                    files[f"{job.pk}.{name}"] = source.read()
    return files


def xlsx_texts(content: bytes) -> str:
    """The cells of an XLSX workbook as one text (its bytes are compressed)."""
    import io

    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(content))
    return "\n".join(
        ",".join("" if v is None else str(v) for v in row)
        for sheet in workbook.worksheets
        for row in sheet.iter_rows(values_only=True)
    )


def readable(content: bytes) -> str:
    if content.startswith(b"PK\x03\x04"):
        return xlsx_texts(content)
    return content.decode("utf-8-sig")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def group(program, tqp):
    group = TierGroup.objects.create(
        program=program,
        code="status",
        name="Status",
        qualifying_currency=tqp,
        model="fixed",
        period_start="01-01",
        tier_duration_months=12,
    )
    for code, threshold in (("blue", 0), ("silver", 500), ("gold", 1500)):
        Tier.objects.create(group=group, code=code, name=code.title(), threshold=threshold)
    return group


def enrol(program, person: Person) -> Member:
    return member_enrol(
        program=program,
        membership_number=person.number,
        email=person.email,
        first_name=person.first_name,
        last_name=person.last_name,
        phone=person.phone,
        birth_date=dt.date(1990, 4, 17),
        country="PL",
        locale="pl-PL",
        consent_email=True,
        attributes={"favourite": "flat white", "nickname": person.first_name},
        enrolled_at=T0,
        now=T0,
        actor="test",
    )


MEMBERS_HEADER = [
    "membership_number",
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "attr_favourite",
]
TRANSACTIONS_HEADER = [
    "external_id",
    "membership_number",
    "type",
    "occurred_at",
    "points",
    "points_currency",
    "reason",
]


def members_file(*people: Person) -> list[list[str]]:
    rows = [MEMBERS_HEADER]
    for person in people:
        rows.append(
            [
                person.number,
                person.email,
                person.first_name,
                person.last_name,
                person.phone,
                "1990-04-17",
                "tea",
            ]
        )
    # the first person's row again, found by e-mail only, with a birth date the import refuses
    # and its rejects file quotes
    first = people[0]
    rows.append(["", first.email.upper(), first.first_name, "", "", "17/04/1990", ""])
    return rows


def transactions_file(person: Person, other: Person) -> list[list[str]]:
    at = (T0 + dt.timedelta(days=2)).isoformat()
    return [
        TRANSACTIONS_HEADER,
        ["imp-1", person.number, "adjustment", at, "5", "PTS", f"Goodwill for {person.first_name}"],
        ["imp-2", person.number, "redemption", at, "99999", "PTS", f"Call {person.phone}"],
        ["imp-3", other.number, "adjustment", at, "7", "PTS", f"Goodwill for {other.first_name}"],
    ]


def stored_import(program, kind: str, content: bytes, name: str) -> ImportJob:
    """An import made in the admin: stored, dry-run (preview rejects), confirmed (rejects)."""
    job = import_job_create(
        kind=kind,
        program=program,
        upload=SimpleUploadedFile(name, content),
        background=lambda job_id, dry_run: None,
        actor="test",
    )
    import_job_confirm(job=job, background=lambda job_id, dry_run: None)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.error
    return job


@pytest.fixture
def history(program, pts, tqp, base_rules, group, post):
    """Zofia (to erase) and Otto (to keep), both with a full history and import files."""
    zofia, otto = enrol(program, ZOFIA), enrol(program, OTTO)
    for person, member in ((ZOFIA, zofia), (OTTO, otto)):
        post(
            member,
            amount=600,
            now=T0 + dt.timedelta(days=1),
            attributes={"store": "Main Street", "customer_email": person.email},
            lines=[
                {
                    "sku": "BEANS",
                    "category": "coffee",
                    "quantity": Decimal("2"),
                    "unit_price": Decimal("300"),
                }
            ],
        )
        post(
            member,
            "adjustment",
            points=10,
            points_currency="PTS",
            reason=f"Apology to {person.first_name} {person.last_name} ({person.phone})",
            now=T0 + dt.timedelta(days=1),
        )
        member_tier_set(
            member=member,
            tier=Tier.objects.get(group=group, code="gold"),
            valid_until=dt.date(2026, 12, 31),
            reason=f"VIP: {person.first_name} asked on {person.email}",
            actor="manager",
            now=T0 + dt.timedelta(days=1),
        )
        member_event_record(
            member=member,
            type=EventType.BIRTHDAY,
            payload={"birthday": dt.date(2025, 4, 17), "greeting": f"Hi {person.first_name}!"},
            occurred_at=T0 + dt.timedelta(days=47),
            dedupe_key="2025",
        )
    jobs = [
        stored_import(program, "members", csv_bytes(members_file(ZOFIA, OTTO)), "members.csv"),
        stored_import(program, "members", xlsx_bytes(members_file(ZOFIA, OTTO)), "members.xlsx"),
        stored_import(
            program, "transactions", csv_bytes(transactions_file(ZOFIA, OTTO)), "sales.csv"
        ),
    ]
    zofia.refresh_from_db()
    otto.refresh_from_db()
    return zofia, otto, jobs
