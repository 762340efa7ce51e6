"""Admin of API keys: creating one shows the raw key once, on the page that answers the POST
(never in a cookie or a message); keys are revoked, never edited.

Registered from `LoyaltyConfig.ready()` (loyalty/admin.py belongs to the back office)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from loyalty.exceptions import LoyaltyError
from loyalty.models import ApiKey
from loyalty.services.api_keys import SCOPES, api_key_create, api_key_revoke


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["program", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "program",
        "prefix",
        "scope_list",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("program", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix")
    list_select_related = ("program",)
    readonly_fields = (
        "program",
        "name",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke"]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request, obj=None):
        return ["program", "name", "scopes"] if obj is None else list(self.readonly_fields)

    def save_model(self, request, obj, form, change):
        if change:
            return  # keys are immutable; revoke and create another
        try:
            key, raw_key = api_key_create(
                program=form.cleaned_data["program"],
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                actor=request.user.get_username(),
            )
        except LoyaltyError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            raise
        obj.pk = key.pk
        obj.prefix, obj.hashed_key, obj.created_at = key.prefix, key.hashed_key, key.created_at
        obj.scopes = key.scopes
        obj.raw_key = raw_key  # for response_add only; never saved

    def response_add(self, request, obj, post_url_continue=None):
        """The created key's page, rendered from the POST itself (no redirect, so the raw key
        travels in this one response and never in a cookie)."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "key": obj,
            "raw_key": obj.raw_key,
        }
        response = TemplateResponse(request, "admin/loyalty/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key, actor=request.user.get_username())
            count += 1
        self.message_user(request, f"{count} API key(s) revoked.", messages.SUCCESS)
