"""Every refusal is a `LoyaltyError` defined in `loyalty.exceptions`, with a code of its own,
and the lists an integrator reads (the module's docstring, docs/api.md) are that list exactly.

Pure tests: they import every module of the project's apps and read files; no database.
"""

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from loyalty import exceptions
from loyalty.exceptions import LoyaltyError

ROOT = Path(__file__).resolve().parents[2]
APPS = ("loyalty", "partners", "promotions", "vouchers", "reports")


def import_every_module() -> None:
    """A subclass exists only once its module is imported: import them all (migrations aside)."""
    for app in APPS:
        package = importlib.import_module(app)
        for module in pkgutil.walk_packages(package.__path__, f"{app}."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)


def subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(subclasses(sub))
    return found


@pytest.fixture(scope="module")
def error_classes() -> list[type[LoyaltyError]]:
    """LoyaltyError and every subclass the project defines (those of tests excluded)."""
    import_every_module()
    return [LoyaltyError] + [
        cls for cls in subclasses(LoyaltyError) if not cls.__module__.startswith("tests.")
    ]


# loyalty's own, and one module per app that extends it (loyalty never imports those).
ERROR_MODULES = {
    "loyalty.exceptions",
    "partners.exceptions",
    "promotions.exceptions",
    "vouchers.exceptions",
    "reports.exceptions",
}


def test_every_loyalty_error_is_defined_in_an_exceptions_module(error_classes):
    elsewhere = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in error_classes
        if cls.__module__ not in ERROR_MODULES
    ]
    assert elsewhere == []


def test_every_code_is_unique(error_classes):
    codes = [cls.code for cls in error_classes]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    assert duplicates == []


def test_every_error_has_a_code_and_an_http_error_status(error_classes):
    for cls in error_classes:
        assert re.fullmatch(r"[a-z_]+", cls.code), cls
        assert 400 <= cls.http_status < 500, cls


def documented(text: str, pattern: str) -> dict[str, int]:
    return {code: int(status) for code, status in re.findall(pattern, text, re.M)}


def test_the_module_docstring_lists_every_code_with_its_status(error_classes):
    listed = documented(exceptions.__doc__, r"^    ([a-z_]+) +(\d{3}) ")
    assert listed == {cls.code: cls.http_status for cls in error_classes}


def test_the_api_documentation_lists_every_code_with_its_status(error_classes):
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text[text.index("## Errors") :]
    section = section[: section.index("\n## ", 1)]
    listed = documented(section, r"^\| `([a-z_]+)` \| (\d{3}) \|")
    assert listed == {cls.code: cls.http_status for cls in error_classes}


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("loyalty.services.members", "MemberExists"),
        ("loyalty.services.members", "InvalidMerge"),
        ("loyalty.services.simulation", "SimulationUnsupported"),
        ("loyalty.services.tiers", "InvalidTierChange"),
        ("loyalty.services.posting", "UnknownMember"),
        ("loyalty.services.posting", "UnknownPartner"),
        ("loyalty.services.requests", "OccurredInFuture"),
    ],
)
def test_errors_that_moved_are_still_importable_where_they_were(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(exceptions, name)
