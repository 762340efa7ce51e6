"""/api/v1/ (docs/api.md)."""

from django.urls import path

from loyalty.api import segments, views

app_name = "api"

urlpatterns = [
    path("members/", views.MemberListView.as_view(), name="members"),
    path("members/<str:number>/", views.MemberDetailView.as_view(), name="member"),
    path(
        "members/<str:number>/balances/",
        views.MemberBalancesView.as_view(),
        name="member-balances",
    ),
    path("members/<str:number>/export/", views.MemberExportView.as_view(), name="member-export"),
    path("members/<str:number>/ledger/", views.MemberLedgerView.as_view(), name="member-ledger"),
    path("members/<str:number>/tiers/", views.MemberTiersView.as_view(), name="member-tiers"),
    path(
        "members/<str:number>/benefits/",
        views.MemberBenefitsView.as_view(),
        name="member-benefits",
    ),
    path("transactions/", views.TransactionCreateView.as_view(), name="transactions"),
    path(
        "transactions/simulate/",
        views.TransactionSimulateView.as_view(),
        name="transactions-simulate",
    ),
    path(
        "transactions/<str:external_id>/",
        views.TransactionDetailView.as_view(),
        name="transaction",
    ),
    path("transfers/", views.TransferView.as_view(), name="transfers"),
    path("segments/", segments.SegmentListView.as_view(), name="segments"),
    path(
        "segments/<str:code>/members/",
        segments.SegmentMembersView.as_view(),
        name="segment-members",
    ),
    # (config/urls.py answers every other path under /api/v1/ with a JSON 404)
]
