"""django-filter filtersets of the API's lists.

`segment` filters by a segment's materialised members (as of its last refresh).
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
        help_text="Segment code: the members of that active segment, as of its last refresh "
        "(an unknown or inactive segment matches nobody).",
    )

    class Meta:
        model = Member
        fields = ["email", "status", "tier", "segment"]

    def filter_tier(self, queryset, name, value):
        return selectors.members_in_tier(queryset, value) if value else queryset

    def filter_segment(self, queryset, name, value):
        return selectors.members_in_segment(queryset, value) if value else queryset


class LedgerFilter(django_filters.FilterSet):
    currency = django_filters.CharFilter(
        field_name="currency__code", help_text="Currency code, e.g. PTS."
    )
    kind = django_filters.ChoiceFilter(choices=LedgerEntry.Kind.choices)

    class Meta:
        model = LedgerEntry
        fields = ["currency", "kind"]
