"""Drives Debian's Chromium (headless, through Playwright) through the hosted connect page and the
local console, as a user would, and prints what it saw as JSON. The Rust test (tests/e2e/browser.rs)
sets the stage (broker, fake provider, platform pages, sessions), reads this output and checks the
broker's store afterwards.

Reads on stdin: {"chromium", "screenshots", "popup": {"app_url"}, "foreign": {"app_url"},
"redirect": {"connect_url", "done"}, "spent_url", "console_url"}.
"""

import json
import pathlib
import sys

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

# Without these, Chromium keeps calling Google's hosts, which this machine's network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def serious_violations(page):
    """axe-core's serious and critical accessibility violations on the page, by rule id."""
    result = Axe().run(page)
    return sorted(
        v["id"]
        for v in result.response["violations"]
        if v.get("impact") in ("serious", "critical")
    )


def wait_for_result(page, timeout_ms=20000):
    page.wait_for_function(
        "document.getElementById('result').textContent.length > 0", timeout=timeout_ms
    )
    return page.text_content("#result"), page.text_content("#messages")


def popup_flow(context, app_url, shots, out, key):
    """The platform page opens the connect popup through connect.js; the user picks the provider."""
    page = context.new_page()
    page.goto(app_url)
    with page.expect_popup() as opened:
        page.click("#connect")
    popup = opened.value
    popup.wait_for_load_state()
    if shots:
        out["connect_page_title"] = popup.title()
        out["connect_page_axe"] = serious_violations(popup)
        popup.screenshot(path=str(shots / "connect-page.png"), full_page=True)
        popup.fill("#search", "zzz-nothing")
        out["search_none_shown"] = popup.is_visible("#none")
        popup.fill("#search", "fake")
        out["visible_after_search"] = popup.locator("#providers li:visible").count()
    popup.click("text=Connect Fake provider")
    result, messages = wait_for_result(page)
    out[key] = {"result": result, "messages": messages}
    page.close()


def main():
    cfg = json.load(sys.stdin)
    shots = pathlib.Path(cfg["screenshots"])
    shots.mkdir(parents=True, exist_ok=True)
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=cfg["chromium"], args=FLAGS)
        context = browser.new_context()

        # 1. Popup mode from the registered origin: the result arrives by postMessage.
        popup_flow(context, cfg["popup"]["app_url"], shots, out, "popup")

        # 2. The same from a page on an unregistered origin: the popup completes, but the
        #    message is addressed to the registered origin only, so this page receives nothing.
        popup_flow(context, cfg["foreign"]["app_url"], None, out, "foreign")

        # 3. Redirect mode, with a provider input: a bad value is refused in the page.
        page = context.new_page()
        page.goto(cfg["redirect"]["connect_url"])
        field = "input[name='input.subdomain']"
        page.fill(field, "-bad")
        page.click("text=Connect Fake provider")
        page.wait_for_timeout(300)
        out["bad_input_stayed"] = page.url == cfg["redirect"]["connect_url"]
        out["bad_input_invalid"] = page.eval_on_selector(field, "e => !e.checkValidity()")
        page.fill(field, "acme")
        with page.expect_navigation(url=lambda u: u.startswith(cfg["redirect"]["done"])):
            page.click("text=Connect Fake provider")
        out["redirect_final_url"] = page.url

        # 4. A spent session: the error page, saying what to do next.
        page.goto(cfg["spent_url"])
        out["spent_heading"] = page.text_content("h1")
        out["spent_text"] = page.text_content("body")

        # 5. The console: connect through the connect page, fetch a token, revoke.
        page.goto(cfg["console_url"])
        out["console_axe"] = serious_violations(page)
        page.click("text=Connect an account")
        page.wait_for_load_state()
        out["console_connect_page"] = page.title()
        page.click("text=Connect Fake provider")
        page.wait_for_url(lambda u: u.startswith(cfg["console_url"]) and "connection_id=" in u)
        out["console_after_connect"] = page.text_content("[role=status]")
        out["console_rows"] = page.locator("tbody tr").count()
        page.screenshot(path=str(shots / "console.png"), full_page=True)
        page.click("tbody tr >> text=Fresh token")
        page.wait_for_load_state()
        out["console_token_notice"] = page.text_content("[role=status]")
        page.click("tbody tr >> text=Revoke")
        page.wait_for_url(lambda u: "revoked=" in u)
        out["console_after_revoke"] = page.text_content("[role=status]")
        out["console_statuses"] = page.locator("tbody tr td:nth-child(3)").all_text_contents()
        page.screenshot(path=str(shots / "console-revoked.png"), full_page=True)
        browser.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
