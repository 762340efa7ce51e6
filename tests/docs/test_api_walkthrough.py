"""The walk-through of docs/api.md runs as written and answers what its `# ->` lines say.

The shell block is taken from the page, not copied: it runs with bash and real curl against a
live server holding the points template program "coffee", and its `manage.py` commands run in
subprocesses on the same test database. Each `# -> STATUS BODY` line is compared with the
response printed at that point (`...` in BODY stands for what the page leaves out), so a
renamed field, a wrong scope, a wrong path or a changed figure fails this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection

from loyalty.definitions import program_load
from loyalty.models import ApiKey, Balance, Member
from tests.loyalty.imports_helpers import database_url

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"
TEMPLATE = ROOT / "loyalty" / "program_templates" / "points.json"
SECTION = "## The first five calls"
DOC_HOST = "http://127.0.0.1:8000"


def walkthrough() -> str:
    """The first ```sh block after the walk-through's heading."""
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"docs/api.md has no {SECTION!r} section"
    found = re.search(r"```sh\n(.*?)```", text[text.index(SECTION) :], re.S)
    assert found, "the walk-through has no ```sh block"
    return found.group(1)


def expectations(block: str) -> list[tuple[int, str]]:
    """(status, body) of every `# -> STATUS BODY` comment, continuation lines joined."""
    result: list[tuple[int, str]] = []
    lines = block.splitlines()
    index = 0
    while index < len(lines):
        head = re.match(r"#\s*->\s*(\d{3})\s*(.*)$", lines[index])
        index += 1
        if not head:
            continue
        parts = [head.group(2)]
        while index < len(lines) and re.match(r"#\s{2,}\S", lines[index]):
            parts.append(lines[index].lstrip("#").strip())
            index += 1
        result.append((int(head.group(1)), " ".join(parts)))
    return result


def body_pattern(expected: str) -> re.Pattern[str]:
    """`...` matches anything; whitespace is free; everything else must match literally."""
    pieces = []
    for piece in expected.split("..."):
        words = [re.escape(word) for word in piece.split()]
        pieces.append(r"\s*" + r"\s*".join(words) + r"\s*")
    return re.compile(".*?".join(pieces), re.S)


def gnu_date() -> bool:
    try:
        run = subprocess.run(["date", "-u", "-d", "-1 hour", "+%FT%TZ"], capture_output=True)
    except OSError:
        return False
    return run.returncode == 0


def test_the_expectation_parser_reads_the_page_format():
    block = (
        "curl ...\n"
        '# -> 201 {"a": "1", ...,\n'
        '#         "b": [{"c": "M-..."}]}\n'
        "# 2. Next step.\n"
        '# -> 422 {"error": {"code": "x"}}\n'
    )
    assert expectations(block) == [
        (201, '{"a": "1", ..., "b": [{"c": "M-..."}]}'),
        (422, '{"error": {"code": "x"}}'),
    ]
    pattern = body_pattern('{"a": "1", ..., "b": [{"c": "M-..."}]}')
    assert pattern.fullmatch('{"a": "1", "z": 2, "b": [{"c": "M-1234-5678"}]}')
    assert not pattern.fullmatch('{"a": "2", "z": 2, "b": [{"c": "M-1234-5678"}]}')
    assert not pattern.fullmatch('{"a": "1", "z": 2, "b": [{"d": "M-1234-5678"}]}')


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.skipif(not gnu_date(), reason="the walk-through uses GNU date (date -d)")
def test_api_walkthrough_runs_as_written(live_server):
    cache.clear()  # throttle counts of earlier tests
    program_load(document=json.loads(TEMPLATE.read_text(encoding="utf-8")), actor="test")
    block = walkthrough()
    api_line = re.search(rf"^API={re.escape(DOC_HOST)}(/\S*)$", block, re.M)
    assert api_line, f"the walk-through should set API={DOC_HOST}/..."
    script = block.replace(api_line.group(0), f"API={live_server.url}{api_line.group(1)}")
    expected = expectations(block)
    assert len(expected) >= 5, "the walk-through lost its `# ->` lines"

    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"the walk-through failed:\n{run.stderr}\n{run.stdout}"

    # Each call prints its body, then its status.
    lines = run.stdout.splitlines()
    assert len(lines) == 2 * len(expected), run.stdout
    for number, (status, body) in enumerate(expected):
        got_body, got_status = lines[2 * number], lines[2 * number + 1]
        shown = json.dumps(json.loads(got_body), ensure_ascii=False, separators=(", ", ": "))
        assert int(got_status) == status, f"call {number + 1}: {got_status} {shown}"
        assert body_pattern(body).fullmatch(shown), (
            f"call {number + 1} answered\n{shown}\nnot what docs/api.md says:\n{body}"
        )

    # And the database holds what the page describes.
    key = ApiKey.objects.get(name="Shop integration")
    assert sorted(key.scopes) == sorted(
        ["members:read", "members:write", "transactions:write", "redemptions:write"]
    )
    anna = Member.objects.get(program__code="coffee", email="anna@example.com")
    balances = {
        balance.currency.code: balance
        for balance in Balance.objects.filter(member=anna).select_related("currency")
    }
    assert balances["PTS"].available == 120
    assert balances["PTS"].redeemed == 100
    assert balances["TQP"].available == 120
