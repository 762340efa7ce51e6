"""Skus and categories became unique per program (partners migration
`prepaid_statements_program_skus`): existing rows go to their partner's programs, one copy
per program; rows of a partner in no program attributed nothing and are dropped."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

MIGRATION = "prepaid_statements_program_skus"


def migrate(targets) -> None:
    MigrationExecutor(connection).migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_skus_and_categories_are_copied_to_each_program_of_their_partner():
    graph = MigrationExecutor(connection).loader.graph
    [mine] = [key for key in graph.nodes if key[0] == "partners" and key[1].endswith(MIGRATION)]
    before = [parent.key for parent in graph.node_map[mine].parents if parent.key[0] == "partners"]
    migrate(before)
    old = MigrationExecutor(connection).loader.project_state(before).apps
    Program = old.get_model("loyalty", "Program")
    Partner = old.get_model("partners", "Partner")
    coffee = Program.objects.create(code="coffee", name="Coffee")
    tea = Program.objects.create(code="tea", name="Tea")
    both = Partner.objects.create(code="both", name="Both")
    nowhere = Partner.objects.create(code="nowhere", name="Nowhere")
    for program in (coffee, tea):
        old.get_model("partners", "PartnerProgram").objects.create(partner=both, program=program)
    old.get_model("partners", "PartnerProduct").objects.create(partner=both, sku="X", name="Ex")
    old.get_model("partners", "PartnerProduct").objects.create(partner=nowhere, sku="Y")
    old.get_model("partners", "PartnerCategory").objects.create(partner=both, category="C")

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from partners.models import PartnerCategory, PartnerProduct

    products = set(
        PartnerProduct.objects.values_list("program__code", "partner__code", "sku", "name")
    )
    assert products == {("coffee", "both", "X", "Ex"), ("tea", "both", "X", "Ex")}
    categories = set(PartnerCategory.objects.values_list("program__code", "category"))
    assert categories == {("coffee", "C"), ("tea", "C")}
