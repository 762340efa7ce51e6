"""django-filter filtersets of the API's lists.

`segment` is part of the API (docs/api.md) but segments arrive in a later version: until
then no member is in one, so that filter matches no member.
"""

from __future__ import annotations

import django_filters

from loyalty import selectors
from loyalty.models import LedgerEntry, Member


class MemberFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(
        field_name="email", lookup_expr="iexact", help_text="Exact e-mail, case-insensitive."
    )
    status = django_filters.ChoiceFilter(choices=Member.Status.choices)
    tier = django_filters.CharFilter(
        method="filter_tier",
        help_text="Tier code: members whose current tier, in any tier group, has this code.",
    )
    segment = django_filters.CharFilter(
        method="filter_segment",
        help_text="Segment code. Segments arrive in a later version: until then this matches "
        "nothing.",
    )

    class Meta:
        model = Member
        fields = ["email", "status", "tier", "segment"]

    def filter_tier(self, queryset, name, value):
        return selectors.members_in_tier(queryset, value) if value else queryset

    def filter_segment(self, queryset, name, value):
        return queryset.none() if value else queryset


class LedgerFilter(django_filters.FilterSet):
    currency = django_filters.CharFilter(
        field_name="currency__code", help_text="Currency code, e.g. PTS."
    )
    kind = django_filters.ChoiceFilter(choices=LedgerEntry.Kind.choices)

    class Meta:
        model = LedgerEntry
        fields = ["currency", "kind"]
