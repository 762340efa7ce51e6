"""Production settings: no default secret outside DEBUG, secure transport by default, each
setting overridable by the environment. Settings are read at import, so each case runs
`manage.py` in a fresh process with only the environment it names."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-production-secret-" + "q7Zx3" * 10,
    "ALLOWED_HOSTS": "loyalty.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tessera",
}


def manage(*args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "TESSERA_ENV_FILE": os.devnull,  # no developer .env
        **environment,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(*names: str, **environment: str) -> dict:
    """The named settings as a fresh process with this environment sees them."""
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    result = manage("shell", "--no-imports", "-c", code, **environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_a_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_debug_a_missing_secret_key_refuses_to_start():
    environment = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = manage("check", **environment)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_debug_runs_without_a_secret_key():
    assert manage("check", DEBUG="true").returncode == 0


TRANSPORT = {
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
}


def test_transport_is_secure_by_default():
    assert settings_of(*TRANSPORT, **PRODUCTION) == TRANSPORT


def test_each_transport_setting_is_overridable_by_its_django_name():
    overrides = {name: "0" if name == "SECURE_HSTS_SECONDS" else "false" for name in TRANSPORT}
    assert settings_of(*TRANSPORT, **PRODUCTION, **overrides) == {
        name: 0 if name == "SECURE_HSTS_SECONDS" else False for name in TRANSPORT
    }


def test_proxy_header_and_trusted_origins_come_from_the_environment():
    environment = {
        **PRODUCTION,
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
        "CSRF_TRUSTED_ORIGINS": "https://loyalty.example.com,https://admin.example.com",
    }
    assert settings_of("SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS", **environment) == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://loyalty.example.com", "https://admin.example.com"],
    }
    assert settings_of("SECURE_PROXY_SSL_HEADER", **PRODUCTION) == {"SECURE_PROXY_SSL_HEADER": None}


def test_throttle_counts_live_in_a_cache_every_web_process_shares():
    caches = settings_of("CACHES", **PRODUCTION)["CACHES"]
    # Django's Redis backend, with one client per pool (config/redis_cache.py)
    assert caches["default"]["BACKEND"] == "config.redis_cache.RedisCache"
    custom = settings_of("CACHES", **PRODUCTION, CACHE_URL="redis://cache.internal:6379/4")
    assert custom["CACHES"]["default"]["LOCATION"] == "redis://cache.internal:6379/4"
