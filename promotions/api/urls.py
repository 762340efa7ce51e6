"""/api/v1/ endpoints of the promotions app (docs/api.md)."""

from django.urls import path

from promotions.api import views

app_name = "promotions-api"

urlpatterns: list = [
    path(
        "members/<str:number>/promotions/",
        views.MemberPromotionsView.as_view(),
        name="member-promotions",
    ),
    path(
        "members/<str:number>/promotions/<str:code>/enroll/",
        views.MemberPromotionEnrollView.as_view(),
        name="member-promotion-enroll",
    ),
    path("members/<str:number>/badges/", views.MemberBadgesView.as_view(), name="member-badges"),
]
