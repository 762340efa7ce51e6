"""Recorded runs of the jobs (loyalty/jobs.py): parts over member ranges, progress, failures,
redelivery, and the Celery path."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from loyalty import jobs
from loyalty.models import JobRun, JobRunPart
from loyalty.tasks import run_jobs_task
from tests.factories import MemberFactory

AS_OF = dt.date(2026, 7, 1)
EXTRA = [
    "tests.loyalty.job_runs_helpers.COUNT_MEMBERS",
    "tests.loyalty.job_runs_helpers.FAIL",
]


@pytest.fixture
def counting(settings):
    settings.TESSERA_EXTRA_JOBS = [*settings.TESSERA_EXTRA_JOBS, *EXTRA]


@pytest.fixture
def members(program):
    return MemberFactory.create_batch(10, program=program)


def test_run_jobs_records_a_finished_run_with_one_part_per_job(program, members):
    rows = jobs.run_jobs(as_of=AS_OF, program_code=program.code, only=["expiry", "rfm"])

    run = JobRun.objects.get()
    assert (run.status, run.step, run.jobs) == ("done", 2, ["expiry", "rfm"])
    assert run.finished_at is not None
    assert [(p.job, p.number, p.id_range) for p in run.part_rows.all()] == [
        ("expiry", 1, None),
        ("rfm", 1, None),
    ]
    assert rows == [("coffee", p.job, p.items) for p in run.part_rows.all()]


def test_member_ranges_hold_every_member_once_in_parts_of_about_equal_size(program, members):
    ranges = jobs.member_id_ranges(program=program, parts=3)

    ids = sorted(m.pk for m in members)
    held = [[i for i in ids if first <= i < end] for first, end in ranges]
    assert [len(h) for h in held] == [4, 3, 3]
    assert sorted(sum(held, [])) == ids
    assert ranges[0][0] == 0 and ranges[-1][1] == jobs.ID_END  # later members fall in the last
    assert jobs.member_id_ranges(program=program, parts=1) == []


def test_a_job_cut_into_parts_gives_each_member_to_one_part(program, members, counting):
    rows = jobs.run_jobs(as_of=AS_OF, program_code=program.code, only=["count_members"], parts=3)

    parts = list(JobRunPart.objects.order_by("number"))
    assert [(p.number, p.items) for p in parts] == [(1, 4), (2, 3), (3, 3)]
    assert rows == [("coffee", "count_members", 10)]


def test_jobs_that_do_not_split_run_in_one_part_whatever_the_parts(program, members, counting):
    jobs.run_jobs(as_of=AS_OF, program_code=program.code, only=["rfm", "count_members"], parts=4)

    assert list(JobRunPart.objects.values_list("job", "number")) == [
        ("rfm", 1),
        ("count_members", 1),
        ("count_members", 2),
        ("count_members", 3),
        ("count_members", 4),
    ]


def test_a_part_delivered_twice_does_its_work_once(program, members, counting):
    started: list[int] = []
    run = jobs.job_run_start(
        program=program, as_of=AS_OF, only=["count_members", "notifications"], parts=2,
        enqueue=started.extend,
    )  # fmt: skip
    first, second = started
    later: list[int] = []

    assert jobs.job_part_run(part_id=first, enqueue=later.extend) == 5
    assert jobs.job_part_run(part_id=first, enqueue=later.extend) is None  # again
    assert later == [] and JobRun.objects.get(pk=run.pk).step == 0
    assert jobs.job_part_run(part_id=second, enqueue=later.extend) == 5
    assert len(later) == 1  # the last part of the job starts the next job, once
    assert jobs.job_part_run(part_id=second, enqueue=later.extend) is None
    assert len(later) == 1
    jobs.job_part_run(part_id=later[0], enqueue=later.extend)
    assert JobRun.objects.get(pk=run.pk).status == "done"


def test_a_failing_job_fails_its_run_and_says_why(program, members, counting):
    with pytest.raises(RuntimeError):
        jobs.run_jobs(
            as_of=AS_OF, program_code=program.code, only=["fail", "notifications"], parts=2
        )

    run = JobRun.objects.get()
    assert run.status == "failed" and run.current_job == "fail"
    assert JobRunPart.objects.filter(job="fail").first().error == "RuntimeError: the disk is full"
    # the next job never started
    assert not JobRunPart.objects.filter(job="notifications").exists()


def test_the_command_prints_each_part_as_it_ends(program, members, counting):
    out = StringIO()
    call_command("run_jobs", "--as-of", "2026-07-01", "--only", "count_members", "--parts", "2",
                 stdout=out)  # fmt: skip

    lines = out.getvalue().splitlines()
    assert "  count_members: part 1 of 2 done, 5 members" in lines
    assert "  count_members: part 2 of 2 done, 5 members" in lines
    assert "coffee\tcount_members\t10 members" in lines
    run = JobRun.objects.get()
    assert run.source == "command"
    assert str(run) == "Jobs of coffee as of 2026-07-01 (done)"


def test_the_command_refuses_zero_parts(program):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("run_jobs", "--parts", "0", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_workers_run_the_parts_and_the_command_follows_them(program, members, counting):
    # Committed for real, as on a server: each part is sent to the (eager) workers once the
    # transaction that created it commits.
    out = StringIO()
    call_command("run_jobs", "--as-of", "2026-07-01", "--only", "count_members,rfm",
                 "--parts", "3", "--workers", stdout=out)  # fmt: skip

    run = JobRun.objects.get()
    assert (run.source, run.status) == ("celery", "done")
    assert JobRunPart.objects.filter(job="count_members").count() == 3
    assert "coffee\tcount_members\t10 members" in out.getvalue().splitlines()


def test_the_scheduled_task_cuts_jobs_into_the_configured_parts(
    program, members, counting, settings, django_capture_on_commit_callbacks
):
    settings.TESSERA_JOB_PARTS = 2
    with django_capture_on_commit_callbacks(execute=True):
        run_ids = run_jobs_task.delay(as_of="2026-07-01", only=["count_members"]).get()

    run = JobRun.objects.get(pk__in=run_ids)
    assert run.status == "done"
    assert sorted(JobRunPart.objects.values_list("items", flat=True)) == [5, 5]


class _Undo(Exception):
    """Rolls a run back so the next one starts from the same history."""


def _written() -> dict:
    """What the jobs write, without ids and times of writing."""
    from loyalty.models import Balance, LedgerEntry, MemberEvent, MemberTier, TierHistory

    return {
        "entries": sorted(
            LedgerEntry.objects.values_list("member_id", "currency_id", "kind", "points")
        ),
        "balances": sorted(
            Balance.objects.values_list("member_id", "currency_id", "available", "expired")
        ),
        "tiers": sorted(
            MemberTier.objects.values_list("member_id", "tier_id", "valid_from", "valid_until")
        ),
        "history": sorted(
            TierHistory.objects.values_list("member_id", "from_tier_id", "to_tier_id", "reason")
        ),
        "events": sorted(MemberEvent.objects.values_list("member_id", "type")),
    }


def test_the_real_jobs_cut_into_parts_write_what_one_part_writes(program, pts, tqp, base_rules,
                                                                   post):  # fmt: skip
    from django.db import transaction

    from loyalty.models import Tier, TierGroup

    # given members with expiring points and tiers reached in 2025 that end with the year
    pts.expiry_policy, pts.expiry_months = "rolling", 6
    pts.save()
    group = TierGroup.objects.create(
        program=program, code="status", name="Status", qualifying_currency=tqp, model="fixed",
        period_start="01-01", tier_duration_months=12,
    )  # fmt: skip
    for code, threshold in (("blue", 0), ("silver", 200), ("gold", 600)):
        Tier.objects.create(group=group, code=code, name=code, threshold=threshold)
    members = MemberFactory.create_batch(
        7, program=program, enrolled_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    )
    for n, member in enumerate(members):
        for month in range(1, 2 + n):
            at = dt.datetime(2025, month, 10, 12, tzinfo=dt.UTC)
            post(member, amount=90 * (n + 1), occurred_at=at, now=at)

    # when the jobs run as of 2027-01-02 in three parts, and (undone) in one
    runs, assessment_parts = {}, {}
    for parts in (3, 1):
        try:
            with transaction.atomic():
                jobs.run_jobs(as_of=dt.date(2027, 1, 2), program_code=program.code, parts=parts)
                runs[parts] = _written()
                assessment_parts[parts] = JobRunPart.objects.filter(job="tier_assessment").count()
                raise _Undo
        except _Undo:
            pass

    # then they wrote the same rows, and the split jobs did run in three parts
    assert runs[3] == runs[1]
    assert assessment_parts == {3: 3, 1: 1}
    kinds = {entry[2] for entry in runs[1]["entries"]}
    assert {"expiry", "qualifying_reset"} <= kinds
    assert {"tier_downgraded", "tier_upgraded"} <= {event[1] for event in runs[1]["events"]}


def test_the_admin_shows_runs_with_their_progress_and_a_failed_part_s_error(
    admin_client, program, members, counting
):
    from django.urls import reverse

    jobs.run_jobs(as_of=AS_OF, program_code=program.code, only=["count_members"], parts=2)
    with pytest.raises(RuntimeError):
        jobs.run_jobs(as_of=AS_OF, program_code=program.code, only=["fail"], parts=1)
    done, failed = JobRun.objects.order_by("id")

    listing = admin_client.get(reverse("admin:loyalty_jobrun_changelist")).content.decode()
    assert "the job done" in listing  # the finished run
    assert "job 1 of 1 (fail): 0/1 parts" in listing
    page = admin_client.get(reverse("admin:loyalty_jobrun_change", args=[failed.pk]))
    assert "RuntimeError: the disk is full" in page.content.decode()
    parts = admin_client.get(reverse("admin:loyalty_jobrun_change", args=[done.pk]))
    assert "the last" in parts.content.decode()  # the open-ended last range
