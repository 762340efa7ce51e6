"""Real-browser tests of the back office: pytest-playwright driving the system's chromium (the
Debian package; CI installs it when missing) against pytest-django's live server.

Without a chromium executable the tests are skipped, saying why. Screenshots of the pages
are written to tests/browser/artifacts/ for someone to look at.
"""

import os
import shutil
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls (fixtures,
# assertions) are synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).parent / "artifacts"
MAX_WIDTH = 1440  # no page may be wider than a 1440 px window
CHROMIUM = os.environ.get("TESSERA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "browser-tests-password"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives a real chromium (skipped when no chromium is installed)"
    )


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return
    skip = pytest.mark.skip(
        reason=f"no chromium executable at {CHROMIUM} (install Debian's chromium package, "
        "or set TESSERA_CHROMIUM)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": MAX_WIDTH, "height": 900}}


@pytest.fixture
def manager(django_user_model):
    return django_user_model.objects.create_superuser(
        username="manager", email="manager@example.com", password=PASSWORD
    )


@pytest.fixture
def signed_in(page, live_server, manager):
    """A page signed in to the admin as a program manager, through the login form."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", manager.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


@pytest.fixture
def shoot(request):
    """shoot(page, name): a full-page screenshot kept as a test artefact."""
    ARTIFACTS.mkdir(exist_ok=True)

    def _shoot(page, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shoot


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")
