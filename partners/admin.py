"""Partners, their participation in programs (terms), and the products and categories that
attribute transactions to them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Prefetch

from partners.models import Partner, PartnerCategory, PartnerProduct, PartnerProgram


class PartnerProgramInline(admin.TabularInline):
    model = PartnerProgram
    extra = 0
    autocomplete_fields = ("program",)
    fields = (
        "program",
        "fee_per_point_issued",
        "reimbursement_per_point_redeemed",
        "billing",
        "prepaid_points_balance",
        "prepaid_alert_threshold",
    )
    # The prepaid balance is drawn down by partner accruals; it is never typed in.
    readonly_fields = ("prepaid_points_balance",)


class PartnerProductInline(admin.TabularInline):
    model = PartnerProduct
    extra = 0
    fields = ("sku", "name")


class PartnerCategoryInline(admin.TabularInline):
    model = PartnerCategory
    extra = 0
    fields = ("category",)


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "kind",
        "status",
        "program_codes",
        "contact_name",
        "contact_email",
        "created_at",
    )
    list_filter = ("kind", "status", "memberships__program")
    search_fields = ("code", "name", "contact_name", "contact_email")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("code", "name", "kind", "status")}),
        ("Contact", {"fields": ("contact_name", "contact_email", "contact_phone")}),
        ("History", {"fields": ("created_at",)}),
    )
    inlines = [PartnerProgramInline, PartnerProductInline, PartnerCategoryInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "memberships",
                    queryset=PartnerProgram.objects.select_related("program").order_by(
                        "program__code"
                    ),
                )
            )
        )

    @admin.display(description="programs")
    def program_codes(self, obj: Partner) -> str:
        return ", ".join(m.program.code for m in obj.memberships.all()) or "-"

    def save_formset(self, request, form, formset, change):
        """Save only the columns an inline form changed, so saving a partner never writes back
        a stale copy of a counter (the prepaid balance) that services update meanwhile."""
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            obj.delete()
        changed = {id(obj): fields for obj, fields in formset.changed_objects}
        for obj in instances:
            if obj.pk and id(obj) in changed:
                obj.save(update_fields=[f for f in changed[id(obj)] if f in _concrete(obj)])
            else:
                obj.save()
        formset.save_m2m()


def _concrete(obj) -> set[str]:
    return {f.name for f in obj._meta.concrete_fields}


@admin.register(PartnerProgram)
class PartnerProgramAdmin(admin.ModelAdmin):
    list_display = (
        "partner",
        "program",
        "billing",
        "fee_per_point_issued",
        "reimbursement_per_point_redeemed",
        "prepaid_points_balance",
        "prepaid_alert_threshold",
    )
    list_filter = ("billing", "program")
    search_fields = ("partner__code", "partner__name", "program__code")
    list_select_related = ("partner", "program")
    autocomplete_fields = ("partner", "program")
    readonly_fields = ("prepaid_points_balance",)

    def save_model(self, request, obj, form, change):
        if change:
            fields = [f for f in form.changed_data if f in _concrete(obj)]
            if fields:
                obj.save(update_fields=fields)
            return
        obj.save()


@admin.register(PartnerProduct)
class PartnerProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "partner")
    list_filter = ("partner",)
    search_fields = ("sku", "name", "partner__code")
    list_select_related = ("partner",)
    autocomplete_fields = ("partner",)


@admin.register(PartnerCategory)
class PartnerCategoryAdmin(admin.ModelAdmin):
    list_display = ("category", "partner")
    list_filter = ("partner",)
    search_fields = ("category", "partner__code")
    list_select_related = ("partner",)
    autocomplete_fields = ("partner",)
