"""The demo program "Coffee Club": the points template plus 18 months of believable history.

Everything is written through the real services (`program_load`, `member_enrol`,
`transactions_post_many` for accruals, `transaction_post` for redemptions and returns,
`run_jobs`), in chronological order with `now = occurred_at`, so every transaction sees the
balances as they were when it happened (escrow, expiry, caps, tiers, referrals) and
`verify_ledger` finds no drift. Accruals are queued and posted in batches, which give what
posting them one by one gives; a redemption or return first posts the queue. The history is
reproducible: one `random.Random(seed)` drives every choice (membership numbers included;
referral codes come from the service).

Idempotent: if the program already has members, nothing is done. The history is written in
one database transaction, so an interrupted load leaves no half demo behind.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction as db_transaction
from django.utils import timezone

from loyalty import codes, dates, jobs, selectors
from loyalty.bulk import PlannerStatistics
from loyalty.definitions import program_load, read_document, template_path
from loyalty.exceptions import LoyaltyError
from loyalty.models import Member, Program
from loyalty.services.members import member_enrol
from loyalty.services.posting import transaction_post
from loyalty.services.posting_batch import PostOutcome, transactions_post_many
from loyalty.services.requests import LineRequest, TransactionRequest

DEMO_TEMPLATE = "points"
DEMO_PROGRAM = "coffee"
HISTORY_DAYS = 548  # about 18 months
ADMIN_URL_HINT = "Admin: http://127.0.0.1:8000/admin/ (admin / admin)"

# --- what members are called and what they buy --------------------------------------------

MALE_FIRST = [
    "Jakub", "Jan", "Antoni", "Szymon", "Filip", "Franciszek", "Aleksander", "Mikołaj",
    "Wojciech", "Kacper", "Piotr", "Tomasz", "Paweł", "Michał", "Krzysztof", "Marcin",
    "Łukasz", "Grzegorz", "Adam", "Mateusz", "Bartosz", "Andrzej", "Stanisław", "Maciej",
]  # fmt: skip
FEMALE_FIRST = [
    "Zuzanna", "Julia", "Maja", "Zofia", "Hanna", "Lena", "Alicja", "Maria", "Amelia",
    "Oliwia", "Anna", "Katarzyna", "Małgorzata", "Agnieszka", "Magdalena", "Joanna",
    "Ewa", "Aleksandra", "Natalia", "Karolina", "Monika", "Barbara", "Marta", "Weronika",
]  # fmt: skip
# Polish surnames with their feminine form.
SURNAMES = [
    ("Nowak", "Nowak"), ("Kowalski", "Kowalska"), ("Wiśniewski", "Wiśniewska"),
    ("Wójcik", "Wójcik"), ("Kowalczyk", "Kowalczyk"), ("Kamiński", "Kamińska"),
    ("Lewandowski", "Lewandowska"), ("Zieliński", "Zielińska"), ("Szymański", "Szymańska"),
    ("Woźniak", "Woźniak"), ("Dąbrowski", "Dąbrowska"), ("Kozłowski", "Kozłowska"),
    ("Jankowski", "Jankowska"), ("Mazur", "Mazur"), ("Kwiatkowski", "Kwiatkowska"),
    ("Krawczyk", "Krawczyk"), ("Piotrowski", "Piotrowska"), ("Grabowski", "Grabowska"),
    ("Nowakowski", "Nowakowska"), ("Pawłowski", "Pawłowska"), ("Michalski", "Michalska"),
    ("Nowicki", "Nowicka"), ("Adamczyk", "Adamczyk"), ("Dudek", "Dudek"),
    ("Zając", "Zając"), ("Wieczorek", "Wieczorek"), ("Jabłoński", "Jabłońska"),
    ("Król", "Król"), ("Majewski", "Majewska"), ("Olszewski", "Olszewska"),
]  # fmt: skip
# Visitors and expats: (first name, last name, country, locale).
EUROPEANS = [
    ("Lukas", "Müller", "DE", "de-DE"), ("Sophie", "Schneider", "DE", "de-DE"),
    ("Emma", "Dubois", "FR", "fr-FR"), ("Louis", "Martin", "FR", "fr-FR"),
    ("Giulia", "Rossi", "IT", "it-IT"), ("Marco", "Bianchi", "IT", "it-IT"),
    ("Lucía", "García", "ES", "es-ES"), ("Pablo", "Fernández", "ES", "es-ES"),
    ("Jana", "Nováková", "CZ", "cs-CZ"), ("Tomáš", "Svoboda", "CZ", "cs-CZ"),
    ("Oliver", "Smith", "IE", "en-IE"), ("Emily", "Jones", "GB", "en-GB"),
    ("Sanne", "de Vries", "NL", "nl-NL"), ("Olena", "Kovalenko", "UA", "uk-UA"),
]  # fmt: skip
COMPANIES = [
    "Kancelaria Nowak i Wspólnicy", "Studio Projektowe Wisła", "Biuro Rachunkowe Lider",
    "Polskie Oprogramowanie Sp. z o.o.", "Agencja Reklamowa Pomysł", "Klinika Zdrowy Uśmiech",
]  # fmt: skip
STORES = ["Kraków Rynek", "Kraków Kazimierz", "Warszawa Mokotów", "Warszawa Śródmieście",
          "Wrocław Rynek", "Gdańsk Długa", "Poznań Stary Rynek"]  # fmt: skip
DRINKS_PREFERENCES = ["espresso", "cappuccino", "flat white", "latte", "cold brew", "filter"]
MILK_PREFERENCES = ["none", "cow", "oat", "soy", "almond"]


@dataclass(frozen=True)
class Product:
    sku: str
    category: str
    price: Decimal
    weight: int  # how often it is bought


CATALOGUE = [
    Product("ESPRESSO", "drinks", Decimal("2.50"), 14),
    Product("CAPPUCCINO", "drinks", Decimal("3.80"), 22),
    Product("LATTE", "drinks", Decimal("4.20"), 18),
    Product("FLAT-WHITE", "drinks", Decimal("4.00"), 12),
    Product("COLD-BREW", "drinks", Decimal("4.50"), 6),
    Product("CROISSANT", "pastries", Decimal("2.20"), 10),
    Product("PACZEK", "pastries", Decimal("1.90"), 8),
    Product("SERNIK", "pastries", Decimal("3.50"), 7),
    Product("CINNAMON-ROLL", "pastries", Decimal("2.80"), 6),
    Product("BEAN-ESP-250", "coffee", Decimal("9.90"), 4),
    Product("BEAN-ETH-250", "coffee", Decimal("12.50"), 3),
    Product("BEAN-COL-1KG", "coffee", Decimal("32.00"), 1),
    Product("CUP-KEEP", "cups", Decimal("14.90"), 1),
    Product("MUG-CLASSIC", "cups", Decimal("11.00"), 1),
]
BEANS = [p for p in CATALOGUE if p.category == "coffee"]
# Rewards members buy with points (PTS).
REWARDS = [
    ("free-espresso", 150),
    ("free-pastry", 200),
    ("free-cappuccino", 250),
    ("beans-250g", 600),
    ("keep-cup", 1000),
]
# What a member does on a given visit: kind -> weight.
ACTIVITY_MIX = [
    ("purchase", 70),
    ("app_login", 12),
    ("review_posted", 4),
    ("survey_completed", 3),
    ("redemption", 8),
    ("reversal", 3),
]


# --- the plan: a timeline of events ------------------------------------------------------


@dataclass
class DemoMember:
    index: int
    number: str
    enrolled_at: dt.datetime
    profile: dict
    member: Member | None = None
    # (external_id, amount, occurred_at, returned) of processed purchases, for returns.
    purchases: list = field(default_factory=list)


@dataclass
class DemoStats:
    members: int = 0
    referred: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    refused: int = 0

    def add(self, kind: str) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


def _ascii(text: str) -> str:
    text = text.replace("ł", "l").replace("Ł", "L")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _membership_number(rng: random.Random, taken: set[str]) -> str:
    while True:
        digits = "".join(rng.choice(codes.DIGITS) for _ in range(8))
        number = f"M-{digits[:4]}-{digits[4:]}"
        if number not in taken:
            taken.add(number)
            return number


def _local_time(rng: random.Random, day: dt.date, tz_name: str) -> dt.datetime:
    """A believable opening-hours instant of `day` in the program's timezone (7:00-21:00,
    busiest in the morning and early afternoon)."""
    hour = min(20, max(7, int(rng.gauss(12.5, 3.2))))
    local = dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)))
    return local.replace(tzinfo=dates.zone(tz_name))


def _profile(rng: random.Random, index: int, enrolled_at: dt.datetime) -> dict:
    roll = rng.random()
    if roll < 0.02:
        company = rng.choice(COMPANIES)
        first, last = rng.choice(MALE_FIRST + FEMALE_FIRST), rng.choice(SURNAMES)[0]
        slug = _ascii(company.split()[0]).lower()
        return {
            "type": Member.Type.CORPORATE,
            "company_name": company,
            "tax_id": "PL" + "".join(rng.choice("0123456789") for _ in range(10)),
            "first_name": first,
            "last_name": last,
            "email": f"biuro{index}@{slug}.example",
            "country": "PL",
            "locale": "pl-PL",
            "enrollment_channel": "store",
            "consent_email": True,
        }
    if roll < 0.10:
        first, last, country, locale = rng.choice(EUROPEANS)
    else:
        female = rng.random() < 0.55
        first = rng.choice(FEMALE_FIRST if female else MALE_FIRST)
        last = rng.choice(SURNAMES)[1 if female else 0]
        country, locale = "PL", "pl-PL"
    email_domain = rng.choice(["gmail.com", "wp.pl", "onet.pl", "o2.pl", "interia.pl"])
    age = rng.randint(18, 72)
    birth = enrolled_at.date().replace(day=1) - dt.timedelta(days=age * 365 + rng.randrange(365))
    phone_digits = "".join(rng.choice("0123456789") for _ in range(8))
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{_ascii(first).lower()}.{_ascii(last).lower().replace(' ', '')}{index}"
        f"@{email_domain if country == 'PL' else 'example.com'}",
        "phone": f"+48 5{phone_digits[:2]} {phone_digits[2:5]} {phone_digits[5:]}",
        "birth_date": birth,
        "country": country,
        "locale": locale,
        "enrollment_channel": rng.choices(["store", "app", "online"], [5, 4, 2])[0],
        "consent_email": rng.random() < 0.7,
        "consent_sms": rng.random() < 0.3,
        "consent_push": rng.random() < 0.5,
        "attributes": {
            "favourite_drink": rng.choice(DRINKS_PREFERENCES),
            "milk": rng.choice(MILK_PREFERENCES),
            "home_store": rng.choice(STORES),
        },
    }


def _plan(
    rng: random.Random, members: int, transactions: int, now: dt.datetime, tz_name: str
) -> tuple[list[DemoMember], list[tuple[dt.datetime, int, str, int]]]:
    """Members with enrolment dates, and a timeline (at, seq, kind, member index)."""
    taken: set[str] = set()
    today = dates.local_date(now, tz_name)
    people = []
    for index in range(members):
        # More members joined recently (the club grows): density rises towards today.
        days_ago = int(HISTORY_DAYS * (1 - math.sqrt(rng.random())))
        day = today - dt.timedelta(days=days_ago)
        enrolled_at = _local_time(rng, day, tz_name)
        if enrolled_at >= now:
            enrolled_at = now - dt.timedelta(minutes=rng.randint(5, 600))
        people.append(DemoMember(index, _membership_number(rng, taken), enrolled_at, {}))
    people.sort(key=lambda p: p.enrolled_at)
    for index, person in enumerate(people):
        person.index = index
        person.profile = _profile(rng, index, person.enrolled_at)
    # Some regulars, many occasional visitors: activity ~ lognormal, times days as a member.
    weights = [
        rng.lognormvariate(0, 0.9) * max((now - p.enrolled_at).total_seconds() / 86400, 0.5)
        for p in people
    ]
    kinds, kind_weights = zip(*ACTIVITY_MIX, strict=True)
    events = []
    if people:
        chosen = rng.choices(range(len(people)), weights=weights, k=transactions)
        for seq, index in enumerate(chosen):
            person = people[index]
            span = (now - person.enrolled_at).total_seconds()
            offset = rng.uniform(60, max(span - 60, 61))
            at = person.enrolled_at + dt.timedelta(seconds=offset)
            local_day = dates.local_date(at, tz_name)
            candidate = _local_time(rng, local_day, tz_name)
            if person.enrolled_at < candidate < now:
                at = candidate
            at = min(at, now - dt.timedelta(seconds=1))
            events.append((at, seq, rng.choices(kinds, kind_weights)[0], index))
    return people, events


# --- replaying the plan through the services -----------------------------------------------


class _Replayer:
    def __init__(self, program: Program, rng: random.Random, stats: DemoStats):
        self.program = program
        self.rng = rng
        self.stats = stats
        self.enrolled: list[DemoMember] = []
        self.sequence = 0
        self.queued: list[tuple[TransactionRequest, str, Callable[[], None] | None]] = []
        self.statistics = PlannerStatistics(min_rows=2_000)  # the demo fills empty tables

    def enrol(self, person: DemoMember) -> None:
        referral_code = ""
        if self.enrolled and self.rng.random() < 0.12:
            referrer = self.rng.choice(self.enrolled[-200:])
            referral_code = referrer.member.referral_code
            self.stats.referred += 1
        person.member = member_enrol(
            program=self.program,
            membership_number=person.number,
            referral_code=referral_code,
            enrolled_at=person.enrolled_at,
            actor="demo",
            now=person.enrolled_at,
            **person.profile,
        )
        self.enrolled.append(person)
        self.stats.members += 1

    def _post(self, request: TransactionRequest, kind: str) -> bool:
        self.flush()  # what this one decides on (balances) needs the accruals before it
        try:
            transaction_post(
                program=self.program, request=request, actor="demo", now=request.occurred_at
            )
        except LoyaltyError:
            self.stats.refused += 1
            return False
        self.stats.add(kind)
        return True

    def _queue(self, request: TransactionRequest, kind: str, on_posted=None) -> None:
        """Accruals wait in a queue and are posted in batches (each as of its own time)."""
        self.queued.append((request, kind, on_posted))
        if len(self.queued) >= 500:
            self.flush()

    def flush(self) -> None:
        if not self.queued:
            return
        queued, self.queued = self.queued, []
        outcomes = transactions_post_many(
            program=self.program,
            requests=[request for request, _, _ in queued],
            actor="demo",
            as_of_occurrence=True,
        )
        for (_, kind, on_posted), outcome in zip(queued, outcomes, strict=True):
            if outcome.status != PostOutcome.CREATED:
                self.stats.refused += 1
                continue
            self.stats.add(kind)
            if on_posted is not None:
                on_posted()
        self.statistics.refresh()

    def _external_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-{self.sequence:07d}"

    def act(self, at: dt.datetime, kind: str, person: DemoMember) -> None:
        if kind == "redemption" and self._redeem(at, person):
            return
        if kind == "reversal" and self._return(at, person):
            return
        if kind in ("app_login", "review_posted", "survey_completed"):
            self._engage(at, kind, person)
            return
        self._purchase(at, person)

    def _purchase(self, at: dt.datetime, person: DemoMember) -> None:
        rng = self.rng
        at_partner = rng.random() < 0.06
        if at_partner:
            products = rng.sample(BEANS, k=rng.randint(1, 2))
            channel, partner, attributes = "partner", "bean-co", {"store": "Bean & Co Roastery"}
        else:
            products = rng.choices(CATALOGUE, [p.weight for p in CATALOGUE], k=rng.randint(1, 4))
            channel = rng.choices(["store", "app", "online"], [75, 18, 7])[0]
            partner = ""
            attributes = {"store": person.profile.get("attributes", {}).get("home_store", "")}
            if channel != "store" or not attributes["store"] or rng.random() < 0.2:
                attributes = {"store": rng.choice(STORES)} if channel == "store" else {}
        merged: dict[str, tuple[Product, int]] = {}
        for product in products:
            quantity = merged.get(product.sku, (product, 0))[1] + 1
            merged[product.sku] = (product, quantity)
        lines = tuple(
            LineRequest(
                sku=product.sku,
                category=product.category,
                quantity=Decimal(quantity),
                unit_price=product.price,
            )
            for product, quantity in merged.values()
        )
        amount = sum((line.quantity * line.unit_price for line in lines), Decimal("0"))
        external_id = self._external_id("pos")
        request = TransactionRequest(
            external_id=external_id,
            member=person.number,
            type="accrual",
            subtype="purchase",
            occurred_at=at,
            amount=amount,
            currency=self.program.currency,
            channel=channel,
            partner=partner,
            lines=lines,
            attributes=attributes,
        )
        self._queue(
            request,
            "purchase",
            lambda: person.purchases.append([external_id, amount, at, False]),
        )

    def _engage(self, at: dt.datetime, event: str, person: DemoMember) -> None:
        self._queue(
            TransactionRequest(
                external_id=self._external_id("app"),
                member=person.number,
                type="accrual",
                subtype="engagement",
                event=event,
                occurred_at=at,
                channel="app" if event != "review_posted" else "online",
            ),
            event,
        )

    def _redeem(self, at: dt.datetime, person: DemoMember) -> bool:
        """A reward the member can afford as of `at` (balances as they were then)."""
        self.flush()
        balance = next(
            view
            for view in selectors.member_balances(person.member, at=at)
            if view.currency.code == "PTS"
        )
        if balance.debt > 0:
            return False
        affordable = [reward for reward in REWARDS if reward[1] <= balance.available]
        if not affordable:
            return False
        reward, cost = self.rng.choice(affordable)
        return self._post(
            TransactionRequest(
                external_id=self._external_id("rdm"),
                member=person.number,
                type="redemption",
                subtype="reward",
                occurred_at=at,
                points=Decimal(cost),
                points_currency="PTS",
                channel=self.rng.choice(["store", "app"]),
                attributes={"reward": reward},
            ),
            "redemption",
        )

    def _return(self, at: dt.datetime, person: DemoMember) -> bool:
        """Return (part of) a purchase of the last 30 days."""
        self.flush()
        recent = [p for p in person.purchases if not p[3] and at - p[2] <= dt.timedelta(days=30)]
        if not recent:
            return False
        purchase = self.rng.choice(recent)
        original_id, amount = purchase[0], purchase[1]
        partial = self.rng.random() < 0.4 and amount >= Decimal("2.00")
        returned = None
        if partial:
            share = Decimal(str(round(self.rng.uniform(0.2, 0.6), 2)))
            returned = max(Decimal("0.01"), (amount * share).quantize(Decimal("0.01")))
        posted = self._post(
            TransactionRequest(
                external_id=self._external_id("ret"),
                member=person.number,
                type="reversal",
                original_external_id=original_id,
                amount=returned,
                occurred_at=at,
                channel="store",
                reason="partial return" if partial else "return",
            ),
            "partial return" if partial else "return",
        )
        purchase[3] = posted
        return posted


def _ensure_admin(log: Callable[[str], None]) -> None:
    user_model = get_user_model()
    if user_model.objects.filter(username="admin").exists():
        return
    user_model.objects.create_superuser("admin", "admin@example.com", "admin")
    log("Created the superuser admin (password: admin).")


def demo_load(
    *,
    members: int = 1000,
    transactions: int = 20000,
    seed: int = 42,
    now: dt.datetime | None = None,
    log: Callable[[str], None] | None = None,
) -> Program:
    """Load the Coffee Club demo (see the module docstring). Returns the program."""
    log = log or (lambda line: None)
    now = now or timezone.now()
    existing = Program.objects.filter(code=DEMO_PROGRAM).first()
    if existing is not None and existing.members.exists():
        log("demo already loaded")
        return existing
    program = program_load(document=read_document(template_path(DEMO_TEMPLATE)), actor="demo")
    _ensure_admin(log)
    rng = random.Random(seed)
    people, events = _plan(rng, members, transactions, now, program.timezone)
    stats = DemoStats()
    replayer = _Replayer(program, rng, stats)
    # One timeline: enrolments and member activity, oldest first.
    timeline = heapq.merge(
        ((p.enrolled_at, -1, "enrol", p.index) for p in people),
        sorted(events),
    )
    log(f"Generating {members} members and {transactions} transactions (seed {seed})...")
    step = max(1, (members + transactions) // 10)
    started = time.monotonic()
    with db_transaction.atomic():
        for done, (at, _, kind, index) in enumerate(timeline, start=1):
            person = people[index]
            if kind == "enrol":
                replayer.enrol(person)
            else:
                replayer.act(at, kind, person)
            if done % step == 0:
                replayer.flush()
                elapsed = time.monotonic() - started
                log(f"  {done} of {members + transactions} events ({elapsed:.0f} s)")
        replayer.flush()
    results = jobs.run_jobs(as_of=jobs.today_for(program, now), program_code=program.code)
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(stats.by_kind.items()))
    log(f"Members: {stats.members} ({stats.referred} referred). Transactions: {kinds}.")
    for _, job, items in results:
        log(f"Job {job}: {items} members.")
    return program
