"""Staff limited to some programs see and change only those programs' data, on every page of
the admin: one rule, applied in one place to every registered model admin, those of the apps
that extend loyalty included (so a page added later is covered without thinking of it).

How: when the apps are ready, each model admin whose model leads to a program (its own
`program` field, or one through a foreign key or two: `member__program`,
`group__program`, ...; or the admin's `program_path` attribute when the way is a reverse
relation, as for partners) gets its queryset filtered by the user's programs
(`selectors.program_ids_for_user`), and its foreign-key choices limited the same way. Objects
of another program are then missing from lists, searches and actions, and their pages answer
404 like objects that do not exist. Models with no program (users, groups, the schedule, the
audit history) are not filtered: who may see them is a matter of Django permissions.
"""

from __future__ import annotations

import functools

from django.contrib import admin
from django.db import models

from loyalty import selectors
from loyalty.models import Program


@functools.cache
def program_path(model: type[models.Model]) -> str | None:
    """The lookup from `model` to its program (`"program"`, `"member__program"`, ...), or
    None when it has none within two foreign keys."""
    if model is Program:
        return "pk"

    def forward(m):
        return [
            f
            for f in m._meta.get_fields()
            if isinstance(f, models.ForeignKey | models.OneToOneField)
            and f.concrete
            and f.related_model is not m
        ]

    first = forward(model)
    for field in first:
        if field.related_model is Program:
            return field.name
    for field in first:
        for second in forward(field.related_model):
            if second.related_model is Program:
                return f"{field.name}__{second.name}"
    return None


def _scoped(queryset, request, path: str, *, distinct: bool = False):
    ids = selectors.program_ids_for_user(request.user)
    if ids is None:
        return queryset
    queryset = queryset.filter(**{f"{path}__in": ids})
    # (a path through a reverse relation, such as a partner's programs, can repeat rows)
    return queryset.distinct() if distinct else queryset


def _scope_choices(model_admin) -> None:
    original_choices = model_admin.formfield_for_foreignkey

    def formfield_for_foreignkey(db_field, request, **kwargs):
        field = original_choices(db_field, request, **kwargs)
        related_path = program_path(db_field.related_model)
        if field is not None and related_path is not None and hasattr(field, "queryset"):
            field.queryset = _scoped(field.queryset, request, related_path)
        return field

    model_admin.formfield_for_foreignkey = formfield_for_foreignkey


def scope_form_fields(form, request) -> None:
    """Limit every choice field of a form instance whose model leads to a program (forms of
    the admin's own making, such as the earning-rule form, included)."""
    for field in form.fields.values():
        queryset = getattr(field, "queryset", None)
        if queryset is not None:
            related_path = program_path(queryset.model)
            if related_path is not None:
                field.queryset = _scoped(queryset, request, related_path)


def _scope_get_form(model_admin) -> None:
    original_get_form = model_admin.get_form

    def get_form(request, obj=None, **kwargs):
        form_class = original_get_form(request, obj, **kwargs)

        class ProgramScopedForm(form_class):
            def __init__(self, *args, **form_kwargs):
                super().__init__(*args, **form_kwargs)
                scope_form_fields(self, request)

        ProgramScopedForm.__name__ = form_class.__name__
        return ProgramScopedForm

    model_admin.get_form = get_form


def scope_model_admin(model_admin: admin.ModelAdmin) -> None:
    """Filter one model admin's queryset, and the foreign-key choices of its forms and
    inlines, by the user's programs."""
    if getattr(model_admin, "_program_scoped", False):
        return
    explicit = getattr(model_admin, "program_path", None)
    path = explicit or program_path(model_admin.model)
    if path is not None:
        original_queryset = model_admin.get_queryset

        def get_queryset(request):
            return _scoped(original_queryset(request), request, path, distinct=bool(explicit))

        model_admin.get_queryset = get_queryset
    _scope_choices(model_admin)
    _scope_get_form(model_admin)
    original_inlines = model_admin.get_inline_instances

    def get_inline_instances(request, obj=None):
        inlines = original_inlines(request, obj)
        for inline in inlines:
            _scope_choices(inline)
        return inlines

    model_admin.get_inline_instances = get_inline_instances
    model_admin._program_scoped = True


def scope_admin_site(site: admin.AdminSite) -> None:
    for model_admin in site._registry.values():
        scope_model_admin(model_admin)
