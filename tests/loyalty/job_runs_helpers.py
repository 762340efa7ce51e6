"""A job for the tests of recorded runs: it counts the program's active members in its range
and writes nothing, so each part's count shows which members it was given."""

from loyalty.jobs import Job
from loyalty.models import Member


def members_count(*, program, as_of, id_range=None) -> int:
    members = Member.objects.filter(program=program, status=Member.Status.ACTIVE)
    if id_range is not None:
        members = members.filter(id__gte=id_range[0], id__lt=id_range[1])
    return members.count()


def members_fail(*, program, as_of, id_range=None) -> int:
    raise RuntimeError("the disk is full")


COUNT_MEMBERS = Job("count_members", members_count, "count active members", splits_by_member=True)
FAIL = Job("fail", members_fail, "always fails", splits_by_member=True)
