"""One system's check (core/ping.run_check): whatever stops it is its answer, never the end of the ping."""

from mlconnector_pipelines.core.errors import AuthenticationError
from mlconnector_pipelines.core.ping import run_check


class Client:
    closed = False

    def close(self) -> None:
        self.closed = True


def check(authenticate=lambda c: None, read=lambda c: "2 companies"):
    client = Client()
    result = run_check(
        "Some ERP", "https://erp.example", connect=lambda: client, authenticate=authenticate, read=read,
        likely_fix=lambda exc: f"fix for {type(exc).__name__}",
    )  # fmt: skip
    return result, client


def test_an_unexpected_error_in_a_read_is_that_systems_answer_and_its_client_is_closed():
    def read(client):
        return {}["value"]  # a check's own bug, or a shape nobody foresaw

    result, client = check(read=read)
    assert (result.auth_ok, result.read_ok, result.ok) == (True, False, False)
    assert result.detail == "unexpected KeyError: 'value'" and result.fix == "fix for KeyError"
    assert client.closed


def test_a_refused_login_marks_the_authentication_step():
    def authenticate(client):
        raise AuthenticationError("Some ERP", "login refused")

    result, _ = check(authenticate=authenticate)
    assert (result.auth_ok, result.read_ok) == (False, None) and "login refused" in result.detail
