"""The demo program "Coffee Club": the points template plus 18 months of believable history.

Everything is written through the real services (`program_load`, `members_enrol_many`,
`transactions_post_many`, `run_jobs`), in chronological order, each transaction posted as of
its own time, so every transaction sees the balances as they were when it happened (expiry,
caps, tiers, referrals) and `verify_ledger` finds no drift. The history is replayed a week
at a time: the week's new members in one batch, then everything members did that week
(purchases, engagement, redemptions, returns) in one batched post, which gives what posting
them one by one gives. What a member does is decided before the week is posted, from the
ledger as it stood when the week began (see `_Replayer`). The history is reproducible: one
`random.Random(seed)` drives every choice (membership numbers included; referral codes come
from the service).

Idempotent: if the program already has members, nothing is done. The history is written in
one database transaction, so an interrupted load leaves no half demo behind.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction as db_transaction
from django.db.models import Sum
from django.test.utils import override_settings
from django.utils import timezone

from loyalty import codes, dates, jobs
from loyalty.bulk import PlannerStatistics
from loyalty.definitions import program_load, read_document, template_path
from loyalty.models import Balance, Bucket, Member, MemberEvent, Program
from loyalty.services.members import members_enrol_many
from loyalty.services.posting_batch import PostOutcome, transactions_post_many
from loyalty.services.requests import LineRequest, TransactionRequest
from partners.models import Partner, PartnerCategory, PartnerProduct, PartnerProgram, PartnerUser

DEMO_TEMPLATE = "points"
DEMO_OFFERS = Path(__file__).resolve().parent / "demo_offers.json"
DEMO_PROGRAM = "coffee"
HISTORY_DAYS = 548  # about 18 months
TRANSACTIONS_PER_MEMBER = 20  # the default number of transactions, per member
WINDOW_DAYS = 7  # the history is posted a week at a time
FOUNDERS = 0.06  # share of members who joined in the club's first month
REGULARS = 0.04  # share of members who are regulars: they come...
REGULAR_VISITS = 6  # ...this many times as often as the others
ADMIN_URL_HINT = "Admin: http://127.0.0.1:8000/admin/ (admin / admin)"
# The partner portal's demo logins (DEBUG only, like admin / admin): username = password.
PORTAL_USERS = [("bean-co", "bean-co"), ("cup-saucer", "cup-saucer")]
PORTAL_URL_HINT = (
    "Partner portal: http://127.0.0.1:8000/portal/ ("
    + ", ".join(f"{username} / {password}" for username, password in PORTAL_USERS)
    + ")"
)
# A second partner next to the template's Bean & Co: the cups and mugs sold in the shops are
# attributed to it by their category, line by line, in shared baskets.
CUPS_PARTNER = {
    "code": "cup-saucer",
    "name": "Cup & Saucer",
    "kind": "brand",
    "contact_name": "Tomasz Wieczorek",
    "contact_email": "hello@cup-saucer.example",
    "category": "cups",
    "products": [("CUP-KEEP", "Keep cup, 340 ml"), ("MUG-CLASSIC", "Classic mug, 300 ml")],
    "fee_per_point_issued": Decimal("0.006"),
}

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
REWARD_CURRENCY = "PTS"
REWARDS = [
    ("free-espresso", 150),
    ("free-pastry", 200),
    ("free-cappuccino", 250),
    ("beans-250g", 600),
    ("keep-cup", 1000),
]
# Rewards redeemed at a partner (the partner's code).
REWARD_PARTNERS = {"beans-250g": "bean-co"}
# What a member does on a given visit: kind -> weight.
ACTIVITY_MIX = [
    ("purchase", 70),
    ("app_login", 12),
    ("review_posted", 4),
    ("survey_completed", 3),
    ("redemption", 5),
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
    # [external_id, amount, occurred_at, returned] of its purchases (a refused one is dropped).
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
        if rng.random() < FOUNDERS:
            # The club's opening month: members from the first weeks of the history on.
            days_ago = HISTORY_DAYS - rng.randrange(30)
        else:
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
    # Some regulars, many occasional visitors: activity ~ lognormal, times days as a member;
    # a few daily regulars climb to the upper tiers.
    weights = [
        rng.lognormvariate(0, 0.9)
        * (REGULAR_VISITS if rng.random() < REGULARS else 1)
        * max((now - p.enrolled_at).total_seconds() / 86400, 0.5)
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


class _Phases:
    """Seconds spent per phase of the load, for the log and docs/performance.md."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started

    def summary(self, total: float) -> str:
        parts = [f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items()]
        other = total - sum(self.seconds.values())
        return ", ".join([*parts, f"other {other:.1f} s"])


@dataclass
class _Window:
    """The plan's events of one week: who joins, and what members do (in time order)."""

    start: dt.date
    end: dt.date  # the last day
    joining: list[DemoMember]
    activity: list[tuple[dt.datetime, int, str, int]]


def _windows(people: list[DemoMember], events: list, tz_name: str) -> Iterator[_Window]:
    """The plan cut into weeks of the program's local calendar, oldest first."""
    if not people:
        return
    first = dates.local_date(people[0].enrolled_at, tz_name)
    by_week: dict[int, _Window] = {}

    def window(at: dt.datetime) -> _Window:
        week = (dates.local_date(at, tz_name) - first).days // WINDOW_DAYS
        if week not in by_week:
            start = first + dt.timedelta(days=week * WINDOW_DAYS)
            end = start + dt.timedelta(days=WINDOW_DAYS - 1)
            by_week[week] = _Window(start, end, [], [])
        return by_week[week]

    for person in people:  # sorted by enrolment
        window(person.enrolled_at).joining.append(person)
    for event in sorted(events):
        window(event[0]).activity.append(event)
    for week in sorted(by_week):
        yield by_week[week]


class _Replayer:
    """Posts the plan week by week: the week's new members in one `members_enrol_many`, then
    everything the members do that week (purchases, engagement, redemptions and returns) in
    one `transactions_post_many`, each transaction as of its own time.

    What a member does is chosen before the week is posted, from what the ledger held when
    the week began: a redemption only of a reward the member can surely afford (the balance
    at the start of the week, less the points that expire during the week, less what the
    week's earlier redemptions and returns of older purchases take), a return only of a
    purchase of the last 30 days. The services still decide every transaction: one they
    refuse is counted as refused and writes nothing.
    """

    def __init__(
        self,
        program: Program,
        people: list[DemoMember],
        rng: random.Random,
        stats: DemoStats,
        phases: _Phases,
    ):
        self.program = program
        self.people = people
        self.rng = rng
        self.stats = stats
        self.phases = phases
        self.enrolled: list[DemoMember] = []
        self.sequence = 0
        self.points = program.currencies.get(code=REWARD_CURRENCY)
        # The demo fills empty tables: the planner's statistics are kept fresh as they grow.
        self.statistics = PlannerStatistics(min_rows=2_000)

    # --- a week ---------------------------------------------------------------------------
    def replay(self, window: _Window) -> None:
        if window.joining:
            self.enrol(window.joining)
        if window.activity:
            self.act(window)
        with self.phases("statistics"):
            self.statistics.refresh()

    def enrol(self, joining: list[DemoMember]) -> None:
        """The week's new members; a referrer is someone who joined in an earlier week."""
        rows = []
        for person in joining:
            referral_code = ""
            if self.enrolled and self.rng.random() < 0.12:
                referrer = self.rng.choice(self.enrolled[-200:])
                referral_code = referrer.member.referral_code
                self.stats.referred += 1
            rows.append(
                {
                    "membership_number": person.number,
                    "referral_code": referral_code,
                    "enrolled_at": person.enrolled_at,
                    **person.profile,
                }
            )
        with self.phases("enrolment"):
            outcomes = members_enrol_many(
                program=self.program,
                rows=rows,
                actor="demo",
                now=max(person.enrolled_at for person in joining),
            )
        for person, outcome in zip(joining, outcomes, strict=True):
            if outcome.error is not None:
                raise outcome.error  # the plan is valid by construction: a refusal is a bug
            person.member = outcome.member
        self.enrolled.extend(joining)
        self.stats.members += len(joining)

    def act(self, window: _Window) -> None:
        with self.phases("balance reads"):
            spendable, in_debt = self._spendable(window.end)
        with self.phases("choosing"):
            planned = self._choose(window, spendable, in_debt)
        with self.phases("posting"):
            outcomes = transactions_post_many(
                program=self.program,
                requests=[request for request, _, _ in planned],
                actor="demo",
                as_of_occurrence=True,
            )
        for (_, kind, settled), outcome in zip(planned, outcomes, strict=True):
            created = outcome.status == PostOutcome.CREATED
            if created:
                self.stats.add(kind)
            else:
                self.stats.refused += 1
            if settled is not None:
                settled(created)

    def _choose(
        self, window: _Window, spendable: dict[int, int], in_debt: set[int]
    ) -> list[tuple[TransactionRequest, str, Callable[[bool], None] | None]]:
        """The week's requests, each with its kind and what to note once it is posted."""
        week_start = dates.start_of_day(window.start, self.program.timezone)
        planned = []
        for at, _, kind, index in window.activity:
            person = self.people[index]
            action = None
            if kind == "redemption" and person.member.id not in in_debt:
                action = self._redemption(at, person, spendable)
            elif kind == "reversal":
                action = self._return(at, person, spendable, week_start)
            elif kind in ("app_login", "review_posted", "survey_completed"):
                action = self._engagement(at, kind, person)
            planned.append(action or self._purchase(at, person))
        return _in_rounds(planned)

    def _spendable(self, last_day: dt.date) -> tuple[dict[int, int], set[int]]:
        """Per member, points of the reward currency surely available all through the week
        that ends on `last_day` (before the week's own transactions), and who owes points."""
        balances = list(
            Balance.objects.filter(member__program=self.program, currency=self.points)
            .order_by()
            .values_list("member_id", "available", "debt")
        )
        spendable = {member_id: available for member_id, available, _ in balances}
        in_debt = {member_id for member_id, _, debt in balances if debt}
        expiring = (
            Bucket.objects.filter(
                member__program=self.program,
                currency=self.points,
                remaining__gt=0,
                expired=False,
                released=True,
                expires_on__lte=last_day,
            )
            .order_by()
            .values("member_id")
            .annotate(points=Sum("remaining"))
            .values_list("member_id", "points")
        )
        for member_id, points in expiring:
            spendable[member_id] = spendable.get(member_id, 0) - points
        return spendable, in_debt

    def _external_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-{self.sequence:07d}"

    # --- what a member does ---------------------------------------------------------------
    def _purchase(self, at: dt.datetime, person: DemoMember):
        rng = self.rng
        at_partner = rng.random() < 0.06
        if person.profile.get("type") == Member.Type.CORPORATE:
            # An office restocks: beans by the kilo and a few bags, ordered online.
            products = rng.choices(BEANS, [4, 3, 6], k=rng.randint(4, 10))
            channel, partner, attributes = "online", "", {}
        elif at_partner:
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
        # [external id, amount, occurred at, returned]: a later return may name it.
        purchase = [external_id, amount, at, False]
        person.purchases.append(purchase)

        def settled(created: bool) -> None:
            if not created:
                person.purchases.remove(purchase)

        return request, "purchase", settled

    def _engagement(self, at: dt.datetime, event: str, person: DemoMember):
        request = TransactionRequest(
            external_id=self._external_id("app"),
            member=person.number,
            type="accrual",
            subtype="engagement",
            event=event,
            occurred_at=at,
            channel="app" if event != "review_posted" else "online",
        )
        return request, event, None

    def _redemption(self, at: dt.datetime, person: DemoMember, spendable: dict[int, int]):
        """A reward the member can surely afford at `at`, or None."""
        available = spendable.get(person.member.id, 0)
        affordable = [reward for reward in REWARDS if reward[1] <= available]
        if not affordable:
            return None
        reward, cost = self.rng.choice(affordable)
        spendable[person.member.id] = available - cost
        channel = self.rng.choice(["store", "app"])
        # A bag of beans is the roaster's own reward: redeemed at Bean & Co, which the program
        # reimburses (the partner's statement and portal show it).
        partner = REWARD_PARTNERS.get(reward, "")
        request = TransactionRequest(
            external_id=self._external_id("rdm"),
            member=person.number,
            type="redemption",
            subtype="reward",
            occurred_at=at,
            points=Decimal(cost),
            points_currency=REWARD_CURRENCY,
            channel="partner" if partner else channel,
            partner=partner,
            attributes={"reward": reward},
        )
        return request, "redemption", None

    def _return(
        self,
        at: dt.datetime,
        person: DemoMember,
        spendable: dict[int, int],
        week_start: dt.datetime,
    ):
        """Return (part of) a purchase of the last 30 days, or None."""
        recent = [p for p in person.purchases if not p[3] and at - p[2] <= dt.timedelta(days=30)]
        if not recent:
            return None
        purchase = self.rng.choice(recent)
        original_id, amount = purchase[0], purchase[1]
        partial = self.rng.random() < 0.4 and amount >= Decimal("2.00")
        returned = None
        if partial:
            share = Decimal(str(round(self.rng.uniform(0.2, 0.6), 2)))
            returned = max(Decimal("0.01"), (amount * share).quantize(Decimal("0.01")))
        if purchase[2] < week_start:
            # It takes back what the purchase earned, which the week's balance counted: at
            # most double points (the weekend beans) on every euro.
            taken = 2 * math.ceil(amount)
            spendable[person.member.id] = spendable.get(person.member.id, 0) - taken
        request = TransactionRequest(
            external_id=self._external_id("ret"),
            member=person.number,
            type="reversal",
            original_external_id=original_id,
            amount=returned,
            occurred_at=at,
            channel="store",
            reason="partial return" if partial else "return",
        )
        purchase[3] = True

        def settled(created: bool) -> None:
            purchase[3] = created

        return request, "partial return" if partial else "return", settled


def _in_rounds(planned: list) -> list:
    """The week's transactions in the order they are posted: each member's in time order,
    members interleaved in rounds (what they did before their first redemption of the week,
    then those redemptions, then what came before their second, and so on).

    Why: the batched poster posts a redemption on its own, and first writes the run of
    accruals it holds if that run holds the same member; in time order nearly every
    redemption would cut the week into another run. In rounds a week is a few runs. The
    ledger is the one time order gives: members' ledgers are independent but for referral
    credits, and a redemption never takes a credit of its own week (`_redemption` counts
    only the points held when the week began, and they are older, so FIFO spends them
    first)."""
    rounds: dict[str, int] = {}
    keyed = []
    for position, item in enumerate(planned):
        request = item[0]
        done = rounds.get(request.member, 0)
        redemption = request.type == "redemption"
        keyed.append(((done, redemption, position), item))
        if redemption:
            rounds[request.member] = done + 1
    return [item for _, item in sorted(keyed, key=lambda pair: pair[0])]


def _ensure_admin(log: Callable[[str], None]) -> None:
    """The demo's admin / admin account, on a developer machine (DEBUG) only: a well-known
    password must never open a server that runs without DEBUG."""
    if not settings.DEBUG:
        log("DEBUG is off, so no admin / admin account: create one with manage.py createsuperuser.")
        return
    user_model = get_user_model()
    if user_model.objects.filter(username="admin").exists():
        return
    user_model.objects.create_superuser("admin", "admin@example.com", "admin")
    log("Created the superuser admin (password: admin).")


def _ensure_cups_partner(program: Program) -> None:
    """The demo's second partner, in the program before its history is posted (so posting
    attributes the cups' lines to it). Written as the program loader writes partners."""
    spec = CUPS_PARTNER
    partner, _ = Partner.objects.get_or_create(
        code=spec["code"],
        defaults={
            "name": spec["name"],
            "kind": spec["kind"],
            "contact_name": spec["contact_name"],
            "contact_email": spec["contact_email"],
        },
    )
    PartnerProgram.objects.get_or_create(
        partner=partner,
        program=program,
        defaults={"fee_per_point_issued": spec["fee_per_point_issued"]},
    )
    PartnerCategory.objects.get_or_create(
        program=program, category=spec["category"], defaults={"partner": partner}
    )
    for sku, name in spec["products"]:
        PartnerProduct.objects.get_or_create(
            program=program, sku=sku, defaults={"partner": partner, "name": name}
        )


def _ensure_portal_users(log: Callable[[str], None]) -> None:
    """The demo partners' portal logins (see PORTAL_USERS), on a developer machine (DEBUG) only,
    for the reason of `_ensure_admin`. Like every partner user they are not staff."""
    if not settings.DEBUG:
        log("DEBUG is off, so no demo partner portal logins: use manage.py create_partner_user.")
        return
    user_model = get_user_model()
    for username, password in PORTAL_USERS:
        partner = Partner.objects.filter(code=username).first()
        if partner is None or user_model.objects.filter(username=username).exists():
            continue
        user = user_model.objects.create_user(username, f"{username}@partners.example", password)
        PartnerUser.objects.create(user=user, partner=partner, created_by="demo")
        log(f"Created the partner portal user {username} (password: {password}).")


def demo_load(
    *,
    members: int | None = None,
    transactions: int | None = None,
    seed: int = 42,
    now: dt.datetime | None = None,
    log: Callable[[str], None] | None = None,
) -> Program:
    """Load the Coffee Club demo (see the module docstring). Returns the program.

    `members` defaults to `settings.TESSERA_DEMO_MEMBERS`, `transactions` to
    `TRANSACTIONS_PER_MEMBER` per member."""
    log = log or (lambda line: None)
    now = now or timezone.now()
    members = settings.TESSERA_DEMO_MEMBERS if members is None else members
    transactions = members * TRANSACTIONS_PER_MEMBER if transactions is None else transactions
    existing = Program.objects.filter(code=DEMO_PROGRAM).first()
    if existing is not None and existing.members.exists():
        log("demo already loaded")
        _ensure_portal_users(log)
        return existing
    started = time.monotonic()
    phases = _Phases()
    with phases("program"):
        program = program_load(document=read_document(template_path(DEMO_TEMPLATE)), actor="demo")
        _ensure_cups_partner(program)
        # Its promotions, badges and reward catalogue: a document of their own, loaded by the
        # definition sections of the promotions and vouchers apps (loyalty imports neither).
        program_load(document=read_document(DEMO_OFFERS), actor="demo")
        _ensure_admin(log)
        _ensure_portal_users(log)
    # Reproducible demo data, not a secret: a seeded generator is what is wanted here.
    rng = random.Random(seed)  # nosec B311
    with phases("plan"):
        people, events = _plan(rng, members, transactions, now, program.timezone)
    stats = DemoStats()
    replayer = _Replayer(program, people, rng, stats, phases)
    log(f"Generating {members} members and {transactions} transactions (seed {seed})...")
    total = members + transactions
    step, done, shown = max(1, total // 10), 0, 0
    with db_transaction.atomic():
        for window in _windows(people, events, program.timezone):
            replayer.replay(window)
            done += len(window.joining) + len(window.activity)
            if done - shown >= step:
                shown = done
                log(f"  {done} of {total} events ({time.monotonic() - started:.0f} s)")
        committing = time.monotonic()
    # COMMIT checks the deferred foreign keys of every row written.
    phases.seconds["commit"] = time.monotonic() - committing
    # The periodic jobs as of today (catching up what fell due in the history; idempotent).
    # (every entry of the history is committed: statements need not wait for late ones)
    history_jobs = [name for name in jobs.job_names() if name != "notifications"]
    with phases("jobs"), override_settings(PARTNER_STATEMENT_SETTLE_MINUTES=0):
        results = jobs.run_jobs(
            as_of=jobs.today_for(program, now), program_code=program.code, only=history_jobs
        )
        # 18 months of history are in the past: nobody is e-mailed or called back about
        # them. Events from now on are delivered by the notifications job as usual.
        MemberEvent.objects.filter(program=program, dispatched_at__isnull=True).update(
            dispatched_at=now, delivered_at=now
        )
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(stats.by_kind.items()))
    log(f"Members: {stats.members} ({stats.referred} referred). Transactions: {kinds}.")
    if stats.refused:
        log(f"Refused by the services: {stats.refused}.")
    for _, job, items in results:
        log(f"Job {job}: {items} members.")
    log(f"Phases: {phases.summary(time.monotonic() - started)}.")
    return program
