"""Who the apps act as, without a server: on behalf of users they fail closed, and a missing
OAuth scope is named with the ``user_api_scopes`` to add; the front door's header rewriting."""

from __future__ import annotations

import pytest
from front_door import User, rewrite_head

from client import AuthenticationError, PermissionDeniedError
from frontends.core.session import (
    SIGN_IN_REQUIRED,
    AppConfig,
    SignInRequired,
    caller_identity,
    describe_error,
    missing_scopes,
    predictor_for,
)

OBO = AppConfig(endpoint_url="http://127.0.0.1:1/invocations", on_behalf_of_user=True)
AS_APP = AppConfig(endpoint_url="http://127.0.0.1:1/invocations")


class Base:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def with_user_token(self, token: str) -> str:
        self.tokens.append(token)
        return f"as {token}"


def test_on_behalf_of_users_a_request_without_a_user_token_is_refused():
    base = Base()
    for headers in (None, {}, {"X-Forwarded-Email": "a@example.com"}, {"X-Forwarded-Access-Token": ""}):
        with pytest.raises(SignInRequired):
            predictor_for(base, headers, OBO)  # type: ignore[arg-type]
    assert base.tokens == []
    assert predictor_for(base, {"x-forwarded-access-token": "t1"}, OBO) == "as t1"  # type: ignore[arg-type]
    assert describe_error(SignInRequired()) == SIGN_IN_REQUIRED
    assert "user_api_scopes" in SIGN_IN_REQUIRED


def test_acting_as_the_app_ignores_forwarded_tokens():
    base = Base()
    assert predictor_for(base, {"X-Forwarded-Access-Token": "t1"}, AS_APP) is base  # type: ignore[arg-type]
    assert predictor_for(base, None, AS_APP) is base  # type: ignore[arg-type]
    assert caller_identity({"X-Forwarded-Access-Token": "t1"}, AS_APP) == "app"
    assert base.tokens == []


def _403(message: str) -> PermissionDeniedError:
    return PermissionDeniedError(message, status_code=403, error_code="PERMISSION_DENIED")


@pytest.mark.parametrize(("message", "scopes"), [
    ("Provided OAuth token does not have required scopes: serving.serving-endpoints",
     ("serving.serving-endpoints",)),
    ("Provided access token does not have required scopes: sql, files.", ("sql", "files")),
    ("Provided OAuth token does not have required scopes: model-serving dashboards.genie",
     ("model-serving", "dashboards.genie")),
    ("User does not have CAN_QUERY on endpoint iris", ()),
    ("", ()),
])
def test_missing_scopes_are_read_from_databricks_403(message, scopes):
    assert missing_scopes(_403(message)) == scopes


def test_missing_scopes_only_for_a_403():
    text = "Provided OAuth token does not have required scopes: sql"
    assert missing_scopes(AuthenticationError(text, status_code=401)) == ()
    assert missing_scopes(ValueError(text)) == ()


def test_a_missing_scope_as_the_user_names_the_user_api_scopes_to_add():
    err = _403("Provided OAuth token does not have required scopes: serving.serving-endpoints")
    text = describe_error(err, as_user=True)
    assert "`serving.serving-endpoints`" in text and "user_api_scopes: [serving.serving-endpoints]" in text
    assert "databricks.yml" in text
    # as the app, user scopes are not the fix: the generic refusal
    assert describe_error(err, as_user=False) == "**The app is not allowed to query this endpoint (HTTP 403).**"
    # a 403 without a scope named: a plain permission refusal
    plain = describe_error(_403("no CAN_QUERY"), as_user=True)
    assert plain == "**You are not allowed to query this endpoint (HTTP 403).**"


def test_the_front_door_replaces_forwarded_headers_and_closes_plain_requests():
    head = (b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nX-Forwarded-Access-Token: forged\r\n"
            b"x-forwarded-email: mallory@example.com\r\nX-Request-Id: 1\r\n\r\n")
    out = rewrite_head(head, User.named("alice", "alice-token")).decode()
    lines = out.split("\r\n")
    assert lines[0] == "GET /x HTTP/1.1" and out.endswith("\r\n\r\n")
    assert "forged" not in out and "mallory" not in out and "X-Request-Id: 1\r\n" not in out
    assert "X-Forwarded-Access-Token: alice-token" in lines and "X-Forwarded-Email: alice@example.com" in lines
    assert "Connection: close" in lines and "Connection: keep-alive" not in lines
    assert sum(line.startswith("X-Request-Id: ") for line in lines) == 1

    ws = b"GET /_stcore/stream HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    out = rewrite_head(ws, User.named("bob", None)).decode()
    assert "Connection: Upgrade" in out and "Connection: close" not in out  # the handshake stays a handshake
    assert "X-Forwarded-Access-Token" not in out and "X-Forwarded-Email: bob@example.com" in out
