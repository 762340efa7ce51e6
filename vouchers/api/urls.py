"""/api/v1/ endpoints of the vouchers app (docs/vouchers.md)."""

from django.urls import path

from vouchers.api import views

app_name = "vouchers-api"

urlpatterns = [
    path(
        "members/<str:number>/vouchers/",
        views.MemberVouchersView.as_view(),
        name="member-vouchers",
    ),
    path("vouchers/<str:code>/", views.VoucherDetailView.as_view(), name="voucher"),
    path("vouchers/<str:code>/reserve/", views.VoucherReserveView.as_view(), name="reserve"),
    path("vouchers/<str:code>/release/", views.VoucherReleaseView.as_view(), name="release"),
    path("vouchers/<str:code>/redeem/", views.VoucherRedeemView.as_view(), name="redeem"),
    path("vouchers/<str:code>/reverse/", views.VoucherReverseView.as_view(), name="reverse"),
    path("rewards/", views.RewardListView.as_view(), name="rewards"),
    path("rewards/<str:code>/purchase/", views.RewardPurchaseView.as_view(), name="purchase"),
]
