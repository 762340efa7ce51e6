"""Staff users with the programs they may work on (`StaffProgramAccess`), on Django's own user
page: leave the programs empty to give access to every program."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from loyalty.models import StaffProgramAccess

User = get_user_model()


class StaffProgramAccessInline(admin.StackedInline):
    model = StaffProgramAccess
    can_delete = True
    filter_horizontal = ("programs",)
    verbose_name = "limit to programs"
    verbose_name_plural = (
        "Programs this user may work on (no row: every program; superusers always see all)"
    )


admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, StaffProgramAccessInline]
