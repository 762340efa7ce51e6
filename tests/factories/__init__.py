"""factory-boy factories for the whole project (timestamps via LazyFunction, never at import)."""

import factory
from django.utils import timezone

from loyalty.models import Currency, EarningRule, Member, Program
from partners.models import Partner, PartnerProgram


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"prog{n}")
    name = factory.LazyAttribute(lambda o: f"Program {o.code}")
    timezone = "Europe/Warsaw"
    currency = "EUR"
    status = Program.Status.ACTIVE


class CurrencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Currency

    program = factory.SubFactory(ProgramFactory)
    code = "PTS"
    name = "Points"
    kind = Currency.Kind.NON_QUALIFYING
    decimals = 0


class QualifyingCurrencyFactory(CurrencyFactory):
    code = "TQP"
    name = "Tier points"
    kind = Currency.Kind.QUALIFYING
    redeemable = False


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    program = factory.SubFactory(ProgramFactory)
    membership_number = factory.Sequence(lambda n: f"M-{n:08d}")
    referral_code = factory.Sequence(lambda n: f"REF{n:08d}")
    email = factory.Faker("email")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    enrolled_at = factory.LazyFunction(timezone.now)
    status = Member.Status.ACTIVE


class EarningRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EarningRule

    program = factory.SubFactory(ProgramFactory)
    code = factory.Sequence(lambda n: f"rule{n}")
    name = factory.LazyAttribute(lambda o: o.code)
    priority = 10
    conditions = factory.LazyFunction(lambda: {"subtypes": ["purchase"]})
    award = factory.LazyFunction(
        lambda: {"type": "per_amount", "currency": "PTS", "points": "1", "per": "1.00"}
    )


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner

    code = factory.Sequence(lambda n: f"partner{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())


class PartnerProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PartnerProgram

    partner = factory.SubFactory(PartnerFactory)
    program = factory.SubFactory(ProgramFactory)
