"""Tessera settings, read from the environment (django-environ).

The quick start works with no variables set: without DATABASE_URL the embedded PostgreSQL of the
`embedded` extra is used (see config/embedded_db.py), or the local server at 127.0.0.1:5432.
DATABASE_URL, when set, always wins.
"""

import datetime as dt
import warnings
from pathlib import Path

import environ
from celery.schedules import crontab

from config.embedded_db import embedded_available, embedded_database_settings

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera"

env = environ.Env()
# A developer machine keeps its settings in .env (`make demo` writes one); the environment wins.
environ.Env.read_env(env.str("TESSERA_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# No default key outside DEBUG: a production server without SECRET_KEY refuses to start.
SECRET_KEY = env.str(
    "SECRET_KEY",
    default="insecure-dev-key-change-me-" + "x" * 24 if DEBUG else environ.Env.NOTSET,
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Transport security: secure by default when DEBUG is off, each overridable by the environment
# variable of its Django name (docs/operations.md).
_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_SECURE)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # the load balancer probes over plain HTTP
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_SECURE)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_SECURE)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_SECURE)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_SECURE)
# Behind a proxy that terminates TLS, e.g. "HTTP_X_FORWARDED_PROTO,https".
SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER", default=[])) or None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "django_celery_beat",
    "health_check",
    "axes",
    "auditlog",
    "loyalty",
    "partners",
    "promotions",
    "vouchers",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, Swagger UI, charts) served by the app itself behind gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The audit history's actor: the session's user (auditlog's, with one signal receiver for
    # the process: config/middleware.py), or the API key (loyalty/audit).
    "config.middleware.AuditlogContextMiddleware",
    "loyalty.audit.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Errors escaping a non-DRF view under /api/ answer the API's JSON shape (413, 500).
    "loyalty.api.middleware.ApiErrorMiddleware",
    # Last, as its docs ask: turns a locked-out login into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
elif embedded_available() and not env.bool("TESSERA_NO_EMBEDDED_DB", default=False):
    DATABASES = {"default": embedded_database_settings()}
else:
    DATABASES = {"default": environ.Env.db_url_config(LOCAL_DATABASE_URL)}
# Persistent connections: a new PostgreSQL connection per request cost the API about 13 ms at
# p50 (docs/performance.md); a connection is checked before reuse after an error or restart.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# The hot statements of a post (loyalty/services/statements.py, bound on the server) are
# prepared after this many runs on a connection: PostgreSQL then skips their parsing and
# planning. The ORM's (client-side binding) cursors never prepare. Prepared statements live
# in the session: behind pgbouncer in transaction mode they need pgbouncer 1.21+ with
# `max_prepared_statements`; set TESSERA_PREPARED_STATEMENTS=false for an older one.
if env.bool("TESSERA_PREPARED_STATEMENTS", default=True):
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Logins (admin and partner portal) lock out after repeated failures (django-axes): a
# username from one address, so a guesser elsewhere cannot lock the real user out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# The cache holds the API's throttle counts, so every web process must share it: Redis in
# production (CACHE_URL); this process's memory under DEBUG (the quick start has no Redis).
CACHES = {
    "default": env.cache_url(
        "CACHE_URL", default="locmemcache://" if DEBUG else "redis://127.0.0.1:6379/1"
    )
}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # The same backend, with one Redis client per pool (config/redis_cache.py says why).
    CACHES["default"]["BACKEND"] = "config.redis_cache.RedisCache"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files straight from the apps' and static/ folders (finders), so a
# deployment needs no collectstatic step; after one, STATIC_ROOT is served too. Until then it
# does not exist, which WhiteNoise would warn about on every start.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / ".tessera" / "media")

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# Seconds before an unanswering mail server fails the e-mail being sent.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# The sender of members' notification e-mails (docs/notifications.md).
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="loyalty@localhost")
# Webhooks to loopback, private and link-local addresses are refused (SSRF) unless this is on,
# as on a developer's machine (docs/notifications.md).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)

# --- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Default schedule, synced into django-celery-beat's tables where managers can edit it.
# Jobs are idempotent and run "as of" today in each program's timezone, so running them
# hourly is safe and catches every program's midnight.
CELERY_BEAT_SCHEDULE = {
    "run-daily-jobs": {
        "task": "loyalty.tasks.run_jobs_task",
        "schedule": 3600.0,
        "description": "Escrow release, expiry, tier assessment and resets, gifts and notices, "
        "RFM scores and segment refresh, as of today in each program's timezone "
        "(python manage.py run_jobs does the same).",
    },
    "notifications": {
        "task": "loyalty.tasks.notifications_task",
        "schedule": 60.0,
        "description": "Member events to webhooks and e-mail, with retries "
        "(python manage.py run_jobs --only notifications does the same).",
    },
    "partner-statements": {
        "task": "partners.tasks.partner_statements_task",
        "schedule": crontab(minute=0, hour=12, day_of_month=1),
        "description": "Close last month's partner statements (docs/partners.md). At 12:00 "
        "UTC the 1st is the 1st in every timezone; the job is idempotent.",
    },
    # run_jobs (above) keeps the report aggregates current hourly; daily, a wider look-back
    # also catches rows of database transactions that were open for long.
    "report-aggregates-daily": {
        "task": "reports.tasks.report_aggregates_task",
        "schedule": 86400.0,
        "description": "Rebuild the daily report aggregates of the last 7 days and of every "
        "day changed since the last build (docs/reports.md).",
    },
    "voucher-reservations-release": {
        "task": "vouchers.tasks.voucher_reservations_release_task",
        "schedule": 300.0,
        "description": "Release voucher reservations (POS checkouts) whose time is up.",
    },
}

# --- REST framework ------------------------------------------------------------------------
# API keys (`Authorization: Api-Key <key>`) or a staff user's admin session; scopes per view;
# every error as {"error": {"code", "message", "fields"}} (loyalty/api/exception_handler.py).
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="1200/min")  # per key
# Failed authentications per client address, in the shared cache (against key guessing).
API_AUTH_FAILURE_RATE = env.str("API_AUTH_FAILURE_RATE", default="20/min")
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "loyalty.api.authentication.ApiKeyAuthentication",
        "loyalty.api.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["loyalty.api.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["loyalty.api.permissions.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": API_THROTTLE_RATE},
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "loyalty.api.exception_handler.api_exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tessera API",
    "DESCRIPTION": "Loyalty back office API for integrations (shops, POS, apps). "
    "Authenticate with `Authorization: Api-Key <key>`; errors are "
    '`{"error": {"code", "message", "fields"}}`. See docs/api.md.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from the drf-spectacular-sidecar package, served from STATIC_URL:
    # the docs page works on an intranet with no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "MemberStatusEnum": "loyalty.models.Member.Status",
        "MemberTypeEnum": "loyalty.models.Member.Type",
        "ChannelEnum": "loyalty.models.Transaction.Channel",
        "LedgerKindEnum": "loyalty.models.LedgerEntry.Kind",
        "PoolEnum": "loyalty.models.LedgerEntry.Pool",
        "VoucherKindEnum": "vouchers.models.VoucherDefinition.Kind",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}

# --- Tessera -------------------------------------------------------------------------------
TESSERA_DEMO_MEMBERS = env.int("TESSERA_DEMO_MEMBERS", default=250)
# CSV/XLSX imports (docs/imports.md): files with more data rows than this run in Celery, with
# progress in the admin; uploads larger than IMPORT_UPLOAD_MAX_MB are refused.
IMPORT_ASYNC_ROWS = env.int("IMPORT_ASYNC_ROWS", default=5000)
IMPORT_UPLOAD_MAX_MB = env.int("IMPORT_UPLOAD_MAX_MB", default=100)
# Writer threads of a members migration (0: one connection), and the streams a transactions
# chunk is posted in at once (1: one batch; 2 overlaps the database's work with Python's, but
# an import run again after a crash is then equal member by member, not row id by row id):
# docs/imports.md, docs/decisions.md.
IMPORT_WRITERS = env.int("IMPORT_WRITERS", default=2)
IMPORT_STREAMS = env.int("IMPORT_STREAMS", default=1)

# Where the promotion report finds a promotion's per-member outcomes of its treated and holdout
# groups for the lift (docs/reports.md): the dotted path of a function (program=, promotion_id=,
# date_from=, date_to=) -> (treated, holdout); empty: no lift shown.
TESSERA_PROMOTION_OUTCOMES = env.str(
    "TESSERA_PROMOTION_OUTCOMES", default="promotions.selectors.promotion_outcomes"
)

# Posting extensions (docs/ledger.md, "The posting pipeline and its extensions"): each acts
# on every posted, batched or simulated accrual, in this order. Earning-rule caps come first;
# promotions, vouchers and partner packs add their classes after it.
TESSERA_POSTING_EXTENSIONS = [
    "loyalty.extensions.caps.EarningRuleCaps",
    "partners.extension.PrepaidPacks",
    "promotions.extension.Promotions",
]
# The other extension points of loyalty, filled by the apps that extend it (loyalty never
# imports them). Program definition sections owned by other apps (loyalty/definition_sections.py),
# loaded in this order after loyalty's own: voucher definitions before the promotions that
# name them.
TESSERA_DEFINITION_SECTIONS = [
    "vouchers.definitions.VoucherDefinitionsSection",
    "promotions.definitions.BadgesSection",
    "promotions.definitions.PromotionsSection",
]
# Inlines other apps add to loyalty's member page (dotted paths of admin inline classes).
TESSERA_MEMBER_ADMIN_INLINES = [
    "vouchers.admin.MemberVoucherInline",
    "promotions.admin.MemberPromotionInline",
    "promotions.admin.MemberBadgeInline",
]
# Actions other apps add to the members' list in the admin (dotted paths of admin actions).
TESSERA_MEMBER_ADMIN_ACTIONS = [
    "vouchers.admin.issue_voucher_to_members",
]
# Jobs of other apps that run_jobs runs after loyalty's own, in this order (dotted paths of
# loyalty.jobs.Job objects); the delivery of events (notifications) runs after them all.
TESSERA_EXTRA_JOBS = [
    "vouchers.jobs.RESERVATION_RELEASE",
    "vouchers.jobs.VOUCHER_EXPIRY",
    "vouchers.jobs.VOUCHER_EXPIRING",
    "partners.jobs.PARTNER_STATEMENTS",
    # last: the day's figures include what the jobs above wrote
    "reports.jobs.REPORT_AGGREGATES",
]
# The hourly run of the jobs cuts each job that works member by member (expiry, tier
# assessment, ...) into this many parts over member ranges, run in parallel by the Celery
# workers (docs/jobs.md); 1 runs each job in one task.
TESSERA_JOB_PARTS = env.int("TESSERA_JOB_PARTS", default=1)
# Issues the voucher of a tier benefit that names a voucher definition (docs/vouchers.md).
TESSERA_BENEFIT_VOUCHER_ISSUER = "vouchers.services.benefits.benefit_voucher_issue"
# A voucher reservation (POS checkout) holds its value this many minutes, then is released.
VOUCHER_RESERVATION_MINUTES = env.int("VOUCHER_RESERVATION_MINUTES", default=30)
# A partner statement reads entries at least this many minutes old (none still committing).
PARTNER_STATEMENT_SETTLE_MINUTES = env.int("PARTNER_STATEMENT_SETTLE_MINUTES", default=10)
# voucher_expiring events are written this many days before a voucher's last valid day.
VOUCHER_EXPIRING_NOTICE_DAYS = env.int("VOUCHER_EXPIRING_NOTICE_DAYS", default=7)
# GDPR (docs/gdpr.md): sections extension apps add to a member's data export (dotted paths of
# callables `(member) -> (key, data)`), and what they erase with a member (callables
# `(member, now)`, run inside the erasure's transaction before the profile is overwritten).
TESSERA_MEMBER_EXPORT_SECTIONS: list[str] = [
    "vouchers.selectors.member_vouchers_export",
    "promotions.selectors.member_promotions_export",
]
TESSERA_MEMBER_ERASE_HOOKS: list[str] = []
# What extension apps move from a duplicate to the survivor when two members are merged
# (callables `(*, survivor, duplicate, now, actor) -> [names of what moved]`, run inside the
# merge's transaction, both members locked; docs/decisions.md "Vouchers follow a merge").
TESSERA_MEMBER_MERGE_HOOKS: list[str] = [
    "vouchers.services.merge.vouchers_merge",
    "promotions.services.merge.promotions_merge",
]
# A transaction dated more than this many minutes after the moment it is posted is refused.
TESSERA_FUTURE_TOLERANCE_MINUTES = env.int("TESSERA_FUTURE_TOLERANCE_MINUTES", default=5)
# A client's transaction dated more than this many days before the moment it is posted is
# refused (opening balances, imports and Tessera's own posts excepted).
TESSERA_BACKDATE_DAYS = env.int("TESSERA_BACKDATE_DAYS", default=90)
# At most this many lines per transaction.
TESSERA_MAX_LINES = env.int("TESSERA_MAX_LINES", default=1000)

# --- Audit history (django-auditlog; loyalty/audit.py adds the actor of every entry) ----------
# Members' personal fields are left out: their changes are recorded by name in MemberChange,
# and an erasure must leave no personal data behind. Secrets are never stored.
_MEMBER_PERSONAL_FIELDS = [
    "email",
    "first_name",
    "last_name",
    "phone",
    "birth_date",
    "company_name",
    "tax_id",
    "locale",
    "country",
    "attributes",
]
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    "loyalty.Program",
    "loyalty.Currency",
    "loyalty.EarningRule",
    "loyalty.TierGroup",
    {"model": "loyalty.Tier", "m2m_fields": ["benefits"]},
    "loyalty.Benefit",
    {"model": "loyalty.ApiKey", "exclude_fields": ["hashed_key", "last_used_at"]},
    {
        "model": "loyalty.Member",
        "exclude_fields": [*_MEMBER_PERSONAL_FIELDS, "last_activity_at", "updated_at"],
    },
    "partners.Partner",
    "partners.PartnerProgram",
    "partners.PartnerProduct",
    "partners.PartnerCategory",
    "promotions.Promotion",
    "promotions.PromotionFunding",
    "promotions.Badge",
    {
        "model": "auth.User",
        "exclude_fields": ["password", "last_login"],
        "m2m_fields": ["groups", "user_permissions"],
    },
    {"model": "auth.Group", "m2m_fields": ["permissions"]},
    "django_celery_beat.PeriodicTask",
)

# --- Partner portal (docs/portal.md) -------------------------------------------------------
# Where the portal is served, for the links create_partner_user prints (set-password links).
TESSERA_PORTAL_BASE_URL = env.str("TESSERA_PORTAL_BASE_URL", default="http://127.0.0.1:8000")
# Rows per page of the portal's transaction list.
TESSERA_PORTAL_PAGE_SIZE = env.int("TESSERA_PORTAL_PAGE_SIZE", default=50)
# The sender of the e-mails Tessera sends (the portal's password reset links among them).
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="tessera@localhost")
