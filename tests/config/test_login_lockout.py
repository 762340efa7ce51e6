"""Admin logins lock out after repeated failures (django-axes), per username and address."""

import pytest
from django.contrib.auth import get_user_model


@pytest.fixture
def manager(db):
    return get_user_model().objects.create_user(
        "manager", password="a-long-passphrase-9", is_staff=True, is_superuser=True
    )


def log_in(client, password, address="203.0.113.7"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "manager", "password": password},
        REMOTE_ADDR=address,
    )


def test_five_failures_lock_the_username_out_from_that_address(client, manager, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200  # the form again, with its error
    assert log_in(client, "wrong").status_code == 429  # the last failure locks
    # the right password no longer opens the door from there
    response = log_in(client, "a-long-passphrase-9")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # from another address the manager still gets in
    response = log_in(client, "a-long-passphrase-9", address="198.51.100.4")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(manager.pk)


def test_a_success_before_the_limit_clears_the_failures(client, manager, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, "a-long-passphrase-9").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, "a-long-passphrase-9").status_code == 302
