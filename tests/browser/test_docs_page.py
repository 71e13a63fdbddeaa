"""`/docs` and `/redoc` in a real browser, offline: every file comes from the server itself.

Swagger UI is used the way a newcomer would: Authorize with the OAuth2 password form (the email
as the username), then Try it out on `GET /api/v1/users/me`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.browser.conftest import Tab
from tests.e2e.conftest import RunningServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def email(server: RunningServer) -> str:
    """A user registered over HTTP, before the browser signs in as them."""
    address = f"docs-{uuid.uuid4().hex[:8]}@example.com"
    registered = httpx.post(
        f"{server.base_url}/api/v1/auth/register",
        json={"email": address, "password": PASSWORD, "display_name": "Docs Reader"},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    return address


def _operation(tab: Tab, method: str, path: str) -> Locator:
    path_label = tab.page.locator(f".opblock-summary-path[data-path='{path}']")
    return tab.page.locator(f".opblock.opblock-{method.lower()}").filter(has=path_label)


def test_swagger_ui_signs_in_and_tries_users_me(tab: Tab, email: str) -> None:
    from playwright.sync_api import expect

    page = tab.page
    page.goto("/docs")
    expect(page).to_have_title("chatbots - Swagger UI")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("chatbots")
    auth_tag = page.locator("#operations-tag-auth")
    expect(auth_tag).to_be_visible()
    expect(_operation(tab, "POST", "/api/v1/auth/token")).to_be_visible()
    expect(page.locator(".opblock-tag-section")).not_to_have_count(0)

    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    expect(dialog).to_be_visible()
    oauth2 = dialog.locator(".auth-container").filter(has_text="OAuth2PasswordBearer")
    oauth2.locator("#oauth_username").fill(email)
    oauth2.locator("#oauth_password").fill(PASSWORD)
    with page.expect_response("**/api/v1/auth/token") as token:
        oauth2.get_by_role("button", name="Apply given OAuth2 credentials").click()
    assert token.value.status == 200, token.value.text()
    expect(oauth2.get_by_role("heading", name="Authorized")).to_be_visible()
    expect(oauth2.locator("code", has_text=email)).to_be_visible()
    oauth2.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    me = _operation(tab, "GET", "/api/v1/users/me")
    me.locator(".opblock-summary").click()
    me.get_by_role("button", name="Try it out").click()
    with page.expect_response("**/api/v1/users/me") as answer:
        me.get_by_role("button", name="Execute").click()
    assert answer.value.request.headers["authorization"].startswith("Bearer ")
    live = me.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("200")
    expect(live.locator(".response-col_description")).to_contain_text(email)

    tab.assert_self_contained()


def _open_redoc(tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.page
    page.goto("/redoc")
    expect(page).to_have_title("chatbots - ReDoc")
    expect(page.get_by_role("heading", level=1)).to_contain_text("chatbots")
    menu = page.get_by_role("menu")
    expect(menu.get_by_role("menuitem", name="users", exact=True)).to_be_visible()
    menu.get_by_role("menuitem", name="auth", exact=True).click()
    expect(menu.get_by_text("Token", exact=True)).to_be_visible()


def test_redoc_renders_from_the_server_alone(tab: Tab) -> None:
    _open_redoc(tab)
    assert tab.off_origin == []


def test_redoc_tries_nothing_from_another_origin(tab: Tab) -> None:
    _open_redoc(tab)
    tab.assert_self_contained()
