"""The extension point of program definitions: sections of the document that other apps
store (voucher definitions, badges, promotions), listed in order in
`settings.TESSERA_DEFINITION_SECTIONS`.

`loyalty.definitions` validates, loads and exports the whole document; for a section key it
does not own, it asks the section configured for that key. Guarantees a section keeps:
- `errors` only reads (the document and what is stored) and reports by JSON path, so an
  invalid document still writes nothing;
- `load` runs inside the loader's database transaction, after loyalty's own sections and the
  sections listed before it (a promotion finds the badges and voucher definitions of the same
  document), and upserts by code: loading twice changes nothing (`LoadReport` counts it);
- `export` returns what `load` accepts, so an exported program loads back equal.

This module is the contract only; it imports nothing that the sections' apps provide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:  # pragma: no cover
    from loyalty.definitions import LoadReport
    from loyalty.models import Program

SETTING = "TESSERA_DEFINITION_SECTIONS"

#: add(path, message): report one error at a JSON path such as `$.promotions[0].reward`.
AddError = Callable[[str, str], None]


class DefinitionSection:
    """One top-level list of the definition document, owned by another app."""

    #: The document's key (`"promotions"`), and how the load report names its objects.
    key = ""
    label = ""
    #: The JSON Schema of one item (draft 2020-12); `#/$defs/...` of the document's schema
    #: may be referred to.
    item_schema: dict[str, Any] = {"type": "object"}

    def errors(self, *, document: dict, program: Program | None, add: AddError) -> None:
        """Report what the schema cannot say (references, ranges). `program` is the stored
        program of the document's code, or None when the load would create it."""

    def load(self, *, program: Program, items: list[dict], report: LoadReport) -> None:
        """Upsert the section's items (a valid document's) for `program`."""

    def export(self, *, program: Program) -> list[dict]:
        """The section's items of `program`, as `load` takes them."""
        return []


def json_path(*parts: str | int) -> str:
    """The JSON path errors are reported at: `json_path("promotions", 0, "reward")` is
    `$.promotions[0].reward`."""
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def section_items(document: dict, key: str) -> list[tuple[int, dict]]:
    """(index, item) of a section's objects, skipping what the schema already refused."""
    value = document.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def definition_upsert(model, lookup: dict, values: dict, kind: str, report: LoadReport):
    """Create, or update only the fields that differ, so an unchanged row is not saved and
    loading a document twice changes nothing (`report` counts created / updated /
    unchanged under `kind`). The one upsert of every section, loyalty's own included."""
    obj = model.objects.select_for_update().filter(**lookup).first()
    if obj is None:
        obj = model.objects.create(**lookup, **values)
        report.count(kind, "created")
        return obj
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if not changed:
        report.count(kind, "unchanged")
        return obj
    for name in changed:
        setattr(obj, name, values[name])
    auto = [f.name for f in model._meta.concrete_fields if getattr(f, "auto_now", False)]
    obj.save(update_fields=changed + auto)
    report.count(kind, "updated")
    return obj


def definition_sections() -> list[DefinitionSection]:
    """The configured sections, in their load order."""
    return [import_string(path)() for path in getattr(settings, SETTING, ())]
