"""Notifications in the back office: webhook subscriptions (the secret shown once, on the page
that answers the POST that created it), the delivery log (read-only; retry or skip by hand),
e-mail templates and the e-mails sent.

Program managers only: these screens need the model's change permission, even to look, so
the analyst's view-everything role does not open them (a subscription's URL and the
receivers' answers are integration details).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from loyalty.admin.common import ReadOnlyAdminMixin, link, short_datetime
from loyalty.exceptions import LoyaltyError
from loyalty.models import (
    EmailNotification,
    EmailTemplate,
    MemberEvent,
    WebhookDelivery,
    WebhookSubscription,
)
from loyalty.services.notifications import (
    email_notifications_resend,
    email_template_check,
    email_template_save,
)
from loyalty.services.webhooks import (
    webhook_body,
    webhook_deliveries_retry,
    webhook_deliveries_skip,
    webhook_event_types_parse,
    webhook_subscription_create,
    webhook_subscription_update,
    webhook_url_check,
)

EVENT_TYPE_CHOICES = MemberEvent.Type.choices


class ManagersOnlyMixin:
    """Seen and used by holders of the model's change permission (program managers)."""

    def _may_change(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def has_module_permission(self, request) -> bool:
        return self._may_change(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._may_change(request)


# --- subscriptions ------------------------------------------------------------------------


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", help_text="https://...")
    events = forms.MultipleChoiceField(
        choices=EVENT_TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Ignored when 'all events' is ticked.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ["program", "url", "all_events", "events", "active", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["events"].initial = self.instance.event_types

    def clean(self):
        data = super().clean()
        try:
            data["url"] = webhook_url_check(data.get("url") or "")
        except LoyaltyError as exc:
            self.add_error("url", exc.fields.get("url", exc.message))
        events = "all" if data.get("all_events") else data.get("events") or []
        try:
            webhook_event_types_parse(events)
        except LoyaltyError as exc:
            self.add_error("events", exc.fields.get("events", exc.message))
        data["events_spec"] = events
        return data


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ManagersOnlyMixin, admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ("url", "program", "event_list", "active", "created_at", "created_by")
    list_filter = ("program", "active")
    search_fields = ("url", "description")
    list_select_related = ("program",)
    readonly_fields = ("created_at", "created_by")

    @admin.display(description="events")
    def event_list(self, obj: WebhookSubscription) -> str:
        return "all" if obj.all_events else ", ".join(obj.event_types)

    def get_fields(self, request, obj=None):
        fields = ["program", "url", "all_events", "events", "active", "description"]
        return fields if obj is None else [*fields, "created_at", "created_by"]

    def get_readonly_fields(self, request, obj=None):
        return ("program", "created_at", "created_by") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            webhook_subscription_update(
                subscription=obj,
                url=data["url"],
                events=data["events_spec"],
                active=data["active"],
                description=data.get("description", ""),
            )
            return
        subscription, secret = webhook_subscription_create(
            program=data["program"],
            url=data["url"],
            events=data["events_spec"],
            description=data.get("description", ""),
            actor=request.user.get_username(),
        )
        subscription.active = data["active"]
        if not subscription.active:
            subscription.save(update_fields=["active"])
        obj.pk, obj.secret, obj.created_at = subscription.pk, secret, subscription.created_at
        obj.all_events, obj.event_types = subscription.all_events, subscription.event_types
        obj.raw_secret = secret  # for response_add only

    def response_add(self, request, obj, post_url_continue=None):
        """The secret, on the page answering the POST (never in a cookie or a message)."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Webhook created",
            "subscription": obj,
            "secret": obj.raw_secret,
        }
        response = TemplateResponse(
            request, "admin/loyalty/webhooksubscription/created.html", context
        )
        response["Cache-Control"] = "no-store"
        return response


# --- deliveries -----------------------------------------------------------------------------


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ManagersOnlyMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The delivery log: what went where, and what the receiver answered."""

    list_display = (
        "id",
        "event_type",
        "member_number",
        "subscription",
        "status",
        "attempts",
        "next_attempt",
        "last_status_code",
        "delivered_at",
    )
    list_filter = ("status", "event__type", "subscription__program", "subscription")
    search_fields = ("member__membership_number", "subscription__url", "=event__id")
    list_select_related = ("event", "member", "subscription")
    show_full_result_count = False
    actions = ["retry", "skip"]
    fields = (
        "event_link",
        "member_number",
        "subscription",
        "status",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "last_response",
        "delivered_at",
        "created_at",
        "body",
    )
    readonly_fields = fields

    @admin.display(description="type", ordering="event__type")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.type

    @admin.display(description="member", ordering="member__membership_number")
    def member_number(self, obj: WebhookDelivery) -> str:
        return link(obj.member, obj.member.membership_number)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: WebhookDelivery) -> str:
        return short_datetime(obj.next_attempt_at) if obj.status == "pending" else "-"

    @admin.display(description="event")
    def event_link(self, obj: WebhookDelivery) -> str:
        return link(obj.event, f"evt_{obj.event_id} ({obj.event.type})")

    @admin.display(description="body sent")
    def body(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", webhook_body(obj.event).decode())

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("event__program", "event__member")

    def has_retry_permission(self, request) -> bool:
        return self._may_change(request)

    @admin.action(description="Retry selected deliveries now", permissions=["retry"])
    def retry(self, request, queryset):
        chosen = list(queryset)
        count = webhook_deliveries_retry(deliveries=chosen)
        for delivery in chosen:
            self.log_change(request, delivery, "Retried by hand.")
        self.message_user(
            request, f"{count} deliveries will be sent at the next run.", messages.SUCCESS
        )

    @admin.action(description="Skip selected deliveries", permissions=["retry"])
    def skip(self, request, queryset):
        chosen = list(queryset)
        count = webhook_deliveries_skip(deliveries=chosen)
        for delivery in chosen:
            self.log_change(request, delivery, "Skipped by hand.")
        self.message_user(
            request,
            f"{count} deliveries skipped; later events of their members flow again.",
            messages.SUCCESS,
        )


# --- e-mail -------------------------------------------------------------------------------


class EmailTemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = ["program", "event_type", "subject", "body", "active"]
        widgets = {"body": forms.Textarea(attrs={"rows": 16, "cols": 90})}

    def clean(self):
        data = super().clean()
        try:
            email_template_check(subject=data.get("subject") or "", body=data.get("body") or "")
        except LoyaltyError as exc:
            for field, message in exc.fields.items():
                self.add_error(field, message)
        return data


@admin.register(EmailTemplate)
class EmailTemplateAdmin(ManagersOnlyMixin, admin.ModelAdmin):
    form = EmailTemplateForm
    list_display = ("event_type", "program", "subject", "active", "updated_at")
    list_filter = ("program", "event_type", "active")
    search_fields = ("subject", "body")
    list_select_related = ("program",)

    def get_readonly_fields(self, request, obj=None):
        return ("program", "event_type", "updated_at") if obj is not None else ("updated_at",)

    def save_model(self, request, obj, form, change):
        email_template_save(template=obj)


@admin.register(EmailNotification)
class EmailNotificationAdmin(ManagersOnlyMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The e-mails of member events: sent, failed (with the error) or skipped."""

    list_display = (
        "id",
        "event_type",
        "member_number",
        "subject",
        "status",
        "error",
        "sent_at",
    )
    list_filter = ("status", "event__type", "event__program")
    search_fields = ("member__membership_number",)
    list_select_related = ("event", "member")
    show_full_result_count = False
    actions = ["resend"]

    @admin.display(description="type", ordering="event__type")
    def event_type(self, obj: EmailNotification) -> str:
        return obj.event.type

    @admin.display(description="member", ordering="member__membership_number")
    def member_number(self, obj: EmailNotification) -> str:
        return link(obj.member, obj.member.membership_number)

    def has_resend_permission(self, request) -> bool:
        return self._may_change(request)

    @admin.action(description="Send selected e-mails again", permissions=["resend"])
    def resend(self, request, queryset):
        chosen = list(queryset)
        count = email_notifications_resend(notifications=chosen)
        for notification in chosen:
            self.log_change(request, notification, "Sent again by hand.")
        self.message_user(
            request, f"{count} e-mails will be sent at the next run.", messages.SUCCESS
        )
