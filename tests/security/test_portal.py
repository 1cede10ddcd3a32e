"""The governance portal in a real browser (issue 18): Debian's chromium,
headless, driven through Debian's chromedriver (Selenium; nothing is
downloaded at run time), against the portal process `govlake portal up`
starts, logged in through the attack suite's real Trino (``secured_lake``)
as its department users. The network is cut for the browser (every host
but 127.0.0.1 resolves to nothing), so each page is shown as an offline
government network shows it. Screenshots go to ``.artifacts/portal/``
(git-ignored).

And the attacks a department user would try on the portal's HTTP surface
(another bureau's issue, an action out of turn, a form without its CSRF
token, a forged session, a redirect off the site), with plain HTTPS requests."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import requests

from pipelines.portal.app import portal_home
from pipelines.portal.service import portal_down, portal_up
from pipelines.serving.trino import certificate_path, password_for
from tests.security.governance_rows import HUKOU_ETHNICITY, HUKOU_ID, HUKOU_PHONE, NOVEMBER_RANKING

PORTAL_PORT = 18449
SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "portal"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def portal(secured_lake):
    settings = dataclasses.replace(secured_lake, portal_port=PORTAL_PORT)
    status = portal_up(settings)
    assert status["answering"], status
    yield settings
    portal_down(settings)


def _spki_pin(settings) -> str:
    """The base64 SHA-256 of the portal certificate's public key: the browser
    trusts exactly this certificate, not any."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificate = x509.load_pem_x509_certificate(certificate_path(settings).read_bytes())
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(portal, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and CHROMEDRIVER):     # not skipped: a browser test that does not run proves nothing
        pytest.fail("Debian's chromium and chromium-driver are not installed: `make browser` (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1366,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                     f"--ignore-certificate-errors-spki-list={_spki_pin(portal)}",
                     # offline: no name resolves but loopback, and no proxy, no sync, no updates
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-proxy-server",
                     "--disable-background-networking", "--disable-sync", "--disable-component-update"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _url(settings, path: str) -> str:
    return f"https://127.0.0.1:{settings.portal_port}{path}"


def _go(driver, element) -> None:
    """Click a link or submit button and wait for the next page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    page = driver.find_element(By.TAG_NAME, "html")
    try:
        element.click()
    except StaleElementReferenceException:
        pass                # the click navigated before the driver finished with the element
    except WebDriverException as exc:
        if "does not belong to the document" not in str(exc):
            raise
    def replaced(_) -> bool:
        """The old page is gone. Chromium 156 sometimes answers a node of a
        replaced document with this error instead of a stale reference."""
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(driver, 60).until(replaced)


def _login(driver, settings, user: str, password: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(_url(settings, "/login"))
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password or password_for(user, settings))
    _go(driver, driver.find_element(By.ID, "login"))


def _text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _issue_ids(driver) -> set[str]:
    from selenium.webdriver.common.by import By

    return {a.text for a in driver.find_elements(By.CSS_SELECTOR, "#issues tbody td:first-child a")}


def _offline_and_styled(driver, settings) -> None:
    """Every resource the page loaded came from the portal, and its own
    stylesheet applied (an unstyled page is what a CDN stylesheet gives offline)."""
    from selenium.webdriver.common.by import By

    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(_url(settings, "/")) for name in loaded), loaded
    border = driver.find_element(By.TAG_NAME, "header").value_of_css_property("border-bottom-color")
    assert border == "rgba(180, 35, 24, 1)", border


def test_a_wrong_password_is_refused_and_recorded(browser, portal):
    from selenium.webdriver.common.by import By

    _login(browser, portal, "psb_analyst", "not-the-password")
    assert "/login" in browser.current_url
    assert "wrong user name or password" in browser.find_element(By.ID, "error").text
    refusals = [json.loads(line) for line in (portal_home(portal) / "refusals.jsonl").read_text().splitlines()]
    assert any(r["status"] == 401 and "psb_analyst" in r["reason"] for r in refusals)
    browser.get(_url(portal, "/home"))                    # still not logged in
    assert "/login" in browser.current_url


def test_a_bureau_sees_only_its_own_issues_answers_one_and_the_answer_lasts(browser, portal):
    from selenium.webdriver.common.by import By

    _login(browser, portal, "psb_analyst")
    assert browser.current_url.endswith("/home"), _text(browser)
    cookie = browser.get_cookie("__Host-govlake_portal")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # psb's open issue only: not hrss's or mca's, not its own closed one
    assert _issue_ids(browser) == {"GI-psb000001"}
    assert {row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#quarantine tbody tr")} == {
        "psb.hukou"}
    _offline_and_styled(browser, portal)
    browser.save_screenshot(str(SHOTS / "bureau-home.png"))

    _go(browser, browser.find_element(By.LINK_TEXT, "GI-psb000001"))
    page = _text(browser)
    assert HUKOU_ID in page and HUKOU_ETHNICITY in page and HUKOU_PHONE in page    # its own row, in full
    # a dispute without a reason is refused, naming the field
    browser.find_element(By.CSS_SELECTOR, "input[value=disputed]").click()
    _go(browser, browser.find_element(By.ID, "submit-action"))
    assert "reason" in browser.find_element(By.ID, "error").text
    browser.find_element(By.CSS_SELECTOR, "input[value=acknowledged]").click()
    browser.find_element(By.ID, "reason").send_keys("re-keying the check characters")
    _go(browser, browser.find_element(By.ID, "submit-action"))
    history = browser.find_element(By.ID, "history").text
    assert "re-keying the check characters" in history and "psb_analyst" in history
    browser.save_screenshot(str(SHOTS / "issue.png"))
    browser.get(_url(portal, "/home"))
    assert "确认 Acknowledge" in browser.find_element(By.ID, "issues").text


def test_a_governor_sees_every_bureaus_issues_masked_and_closes_and_reopens_one(browser, portal):
    from selenium.webdriver.common.by import By

    _login(browser, portal, "governor_li")
    assert _issue_ids(browser) == {"GI-psb000001", "GI-hrss00001", "GI-mca000001", "GI-mca000002"}
    browser.save_screenshot(str(SHOTS / "governor-home.png"))
    browser.get(_url(portal, "/issues/GI-psb000001"))
    page = _text(browser)
    # psb's row as the sharing list shows it to a department without a grant
    assert HUKOU_ID not in page and HUKOU_ETHNICITY not in page and HUKOU_PHONE not in page
    assert "441900" in page                                # the ID's first six digits are kept
    # the governor's actions, not the bureau's
    assert not browser.find_elements(By.CSS_SELECTOR, "input[value=acknowledged]")
    browser.get(_url(portal, "/issues/GI-mca000002"))
    browser.find_element(By.ID, "reason").send_keys("mca re-delivered the register")
    _go(browser, browser.find_element(By.ID, "submit-action"))
    assert browser.find_element(By.ID, "issue-status").text == "closed"
    browser.find_element(By.ID, "reason").send_keys("the dates are wrong again")
    _go(browser, browser.find_element(By.ID, "submit-action"))
    assert browser.find_element(By.ID, "issue-status").text == "open"
    assert [row.text.split()[2] for row in browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")][-2:] == [
        "关闭", "重新打开"]


def test_a_governor_ranks_bureaus_by_month_from_the_stored_scorecards(browser, portal):
    from selenium.webdriver.common.by import By

    _login(browser, portal, "governor_li")
    _go(browser, browser.find_element(By.ID, "ranking-link"))
    assert browser.find_element(By.ID, "month").text == "2026-11"          # the newest month with snapshots
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")]
    assert [(r[1], float(r[2]), int(r[0])) for r in rows] == NOVEMBER_RANKING
    assert [r[3] for r in rows] == ["3", "3", "3"] and rows[1][6] == "+2.00"      # psb: 85 -> 87
    # the chart draws the same figures: one bar per bureau, as long as its score
    bars = browser.find_elements(By.CSS_SELECTOR, "#ranking-chart rect")
    assert [round(float(b.get_attribute("width")) / 5, 2) for b in bars] == [score for _, score, _ in NOVEMBER_RANKING]
    assert {r.find_elements(By.TAG_NAME, "td")[1].text for r in
            browser.find_elements(By.CSS_SELECTOR, "#scorecard tbody tr")} == {
        "psb.hukou", "psb.residence_permit", "hrss.social_insurance", "mca.death"}
    # the timeliness heat map: every planted November day of every feed on time
    heat = {row.find_elements(By.TAG_NAME, "td")[0].text: [c.get_attribute("class") for c in
                                                            row.find_elements(By.CSS_SELECTOR, "td.cell")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#timeliness tbody tr")}
    assert set(heat) == {"psb.hukou", "psb.residence_permit", "hrss.social_insurance", "mca.death"}
    assert all(cells == ["cell on_time"] * 3 for cells in heat.values()), heat
    _offline_and_styled(browser, portal)
    browser.save_screenshot(str(SHOTS / "ranking.png"))
    browser.get(_url(portal, "/ranking?month=2026-13"))
    assert "not a month" in browser.find_element(By.ID, "error").text


def test_a_bureau_sees_its_own_trend_and_not_the_ranking(browser, portal):
    from selenium.webdriver.common.by import By

    _login(browser, portal, "psb_analyst")
    # the last 90 days of snapshots as Trino gives them to psb: its own feeds' scores, averaged per day
    figures = [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
               for row in browser.find_elements(By.CSS_SELECTOR, "#trend-figures tbody tr")]
    assert [float(score) for _, score in figures][-3:] == [85.0, 86.0, 87.0]
    assert not browser.find_elements(By.ID, "ranking-link")
    browser.get(_url(portal, "/ranking"))
    assert "governors'" in browser.find_element(By.ID, "refused").text


def test_a_department_searches_the_catalog_and_reads_a_resource_page(browser, portal):
    from selenium.webdriver.common.by import By

    _login(browser, portal, "hrss_officer")
    assert "delivers" not in _text(browser)                 # hrss delivers feeds: its home has its issues
    assert _issue_ids(browser) == {"GI-hrss00001"}
    _go(browser, browser.find_element(By.LINK_TEXT, "数据资源目录 Catalog"))
    browser.find_element(By.ID, "q").send_keys("person_id")
    _go(browser, browser.find_element(By.ID, "search"))
    found = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "#resources tbody td:first-child a")}
    assert "base.population" in found and int(browser.find_element(By.ID, "result-count").text) == len(found)
    _go(browser, browser.find_element(By.LINK_TEXT, "base.population"))
    states = {row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[5].text
              for row in browser.find_elements(By.CSS_SELECTOR, "#columns tbody tr")}
    assert states["ethnicity"] == "denied" and states["person_id"] in ("masked", "full")
    # the preview as Trino gives it to hrss: pseudonyms for IDs, no denied column
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#preview thead th")]
    ids = [row.find_elements(By.TAG_NAME, "td")[header.index("person_id")].text
           for row in browser.find_elements(By.CSS_SELECTOR, "#preview tbody tr")]
    assert "ethnicity" not in header and ids and all(i.startswith("P") and len(i) == 25 for i in ids), ids
    assert "silver.psb_hukou" in browser.find_element(By.ID, "lineage").text
    # freshness and pass rate: resource_health as the last publish computed it, read by a non-owner
    from pipelines.lake.delta import read_delta_rows
    from pipelines.lake.paths import governance_path

    health = read_delta_rows(governance_path("resource_health", portal), [("resource_id", "=", "base.population")])[0]
    assert health["last_changed_at"] is not None                     # the planted library table
    assert browser.find_element(By.ID, "last-changed").text == f"{health['last_changed_at']:%Y-%m-%d %H:%M}"
    assert browser.find_element(By.ID, "deliveries").text.startswith(str(health["deliveries"]))
    assert "psb.hukou" in browser.find_element(By.ID, "health").text
    _offline_and_styled(browser, portal)
    browser.save_screenshot(str(SHOTS / "resource.png"))


def test_a_town_without_feeds_gets_the_catalog_not_issues_and_previews_only_its_town(browser, portal):
    from selenium.webdriver.common.by import By

    from tests.security.conftest import population_rows

    _login(browser, portal, "nancheng_officer")
    assert "delivers no feeds" in _text(browser) and not browser.find_elements(By.ID, "issues")
    browser.get(_url(portal, "/catalog/base.population"))
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#preview thead th")]
    towns = [row.find_elements(By.TAG_NAME, "td")[header.index("town_code")].text
             for row in browser.find_elements(By.CSS_SELECTOR, "#preview tbody tr")]
    in_town = [r for r in population_rows() if r["is_current"] and r["town_code"] == "441900004"]
    assert towns == ["441900004"] * len(in_town) and len(in_town) < sum(r["is_current"] for r in population_rows())
    # a town owns no feed, yet the resource's freshness is everyone's to read
    assert browser.find_element(By.ID, "last-changed").text[:4].isdigit()
    browser.get(_url(portal, "/issues/GI-psb000001"))
    # Trino's own refusal, named: a town has no rule on the governance list
    assert "Access Denied" in browser.find_element(By.ID, "refused").text and HUKOU_ID not in _text(browser)


def test_a_request_from_a_resource_page_becomes_a_live_grant_after_consent_and_approval(browser, portal):
    """mca asks for psb's full_name in silver.psb_hukou; psb consents; the
    governor approves; the rules keeper makes the grant live and mca's
    preview shows the column, with no other step. The grant is removed
    afterwards (the attack suite's later modules expect the catalog's own)."""
    import time
    from pathlib import Path

    from selenium.webdriver.common.by import By

    def preview_header() -> list[str]:
        return [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#preview thead th")]

    _login(browser, portal, "mca_officer")
    browser.get(_url(portal, "/catalog/silver.psb_hukou"))
    assert "full_name" not in preview_header() and "id_number" not in preview_header()
    # a form without a purpose or a date is refused, naming the fields
    browser.find_element(By.CSS_SELECTOR, "input[name=columns][value=full_name]").click()
    _go(browser, browser.find_element(By.ID, "file-request"))
    errors = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".form-error"))
    assert "purpose:" in errors and "legal_basis:" in errors and "expires:" in errors
    browser.find_element(By.CSS_SELECTOR, "input[name=columns][value=full_name]").click()
    browser.find_element(By.ID, "purpose").send_keys("婚姻登记核验户籍")
    browser.find_element(By.ID, "legal_basis").send_keys("《婚姻登记条例》第七条")
    browser.execute_script("document.getElementById('expires').value = arguments[0]",
                           portal.on_date().replace(year=portal.on_date().year + 1).isoformat())
    _go(browser, browser.find_element(By.ID, "file-request"))
    assert browser.current_url.endswith("/requests")
    [request_id] = [row.find_elements(By.TAG_NAME, "td")[0].text
                    for row in browser.find_elements(By.CSS_SELECTOR, "#requests tbody tr")
                    if "silver.psb_hukou" in row.text and "pending" in row.text]

    _login(browser, portal, "governor_li")           # approval before psb consents is refused
    browser.get(_url(portal, "/requests"))
    browser.find_element(By.ID, f"reason-{request_id}").send_keys("依法核验")
    _go(browser, browser.find_element(By.ID, f"approve-{request_id}"))
    assert "needs the consent of psb" in browser.find_element(By.ID, "error").text

    _login(browser, portal, "psb_analyst")
    browser.get(_url(portal, "/requests"))
    _go(browser, browser.find_element(By.ID, f"consent-{request_id}"))
    assert not browser.find_elements(By.ID, f"consent-{request_id}")

    _login(browser, portal, "governor_li")
    browser.get(_url(portal, "/requests"))
    browser.find_element(By.ID, f"reason-{request_id}").send_keys("依法核验")
    _go(browser, browser.find_element(By.ID, f"approve-{request_id}"))
    assert browser.find_element(By.ID, f"status-{request_id}").text == "approved"
    grant = Path(portal.catalog_dir) / "grants" / f"{request_id.lower()}.yaml"
    try:
        assert grant.exists()
        _login(browser, portal, "mca_officer")
        deadline = time.monotonic() + portal.rules_refresh_seconds + 30
        while "full_name" not in preview_header() and time.monotonic() < deadline:
            time.sleep(2)
            browser.get(_url(portal, "/catalog/silver.psb_hukou"))
        header = preview_header()
        names = [row.find_elements(By.TAG_NAME, "td")[header.index("full_name")].text
                 for row in browser.find_elements(By.CSS_SELECTOR, "#preview tbody tr")]
        assert names and all(names), names
        assert "id_number" not in header                        # only what was asked for
        browser.save_screenshot(str(SHOTS / "granted.png"))
    finally:
        grant.unlink(missing_ok=True)
        from tests.security.conftest import run_as
        deadline = time.monotonic() + portal.rules_refresh_seconds + 30
        while time.monotonic() < deadline:
            try:
                run_as(portal, "mca_officer", "select full_name from lake.silver.psb_hukou")
            except Exception:  # noqa: BLE001 - refused again: the grant is gone
                break
            time.sleep(2)


# --------------------------------------------------------------------------- the HTTP surface, attacked

def _session(settings, user: str) -> tuple[requests.Session, str]:
    """A logged-in HTTPS session for ``user`` and its CSRF token."""
    http = requests.Session()
    http.trust_env = False
    http.verify = str(certificate_path(settings))
    form = http.get(_url(settings, "/login")).text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    answer = http.post(_url(settings, "/login"), data={"username": user, "password": password_for(user, settings),
                                                       "csrf": token, "next": "/home"})
    assert answer.status_code == 200 and "/home" in answer.url, answer.text[:500]
    return http, re.search(r'name="csrf" value="([^"]+)"', answer.text).group(1)


def test_another_bureaus_issue_and_actions_out_of_turn_are_refused_and_recorded(portal):
    http, token = _session(portal, "psb_analyst")
    other = http.get(_url(portal, "/issues/GI-hrss00001"))
    assert other.status_code == 404 and "another bureau" in other.text
    for issue_id, action in (("GI-hrss00001", "acknowledged"), ("GI-psb000001", "closed")):
        answer = http.post(_url(portal, f"/issues/{issue_id}/actions"),
                           data={"action": action, "reason": "x", "csrf": token}, allow_redirects=False)
        assert answer.status_code in (403, 404), (issue_id, action, answer.status_code)
    # an id that is SQL is nobody's issue
    assert http.get(_url(portal, "/issues/GI-1' OR '1'='1")).status_code == 404
    refusals = (portal_home(portal) / "refusals.jsonl").read_text()
    assert "only a governor may mark an issue closed" in refusals and "GI-hrss00001" in refusals


def test_only_a_governor_decides_and_only_an_owner_consents(portal):
    from datetime import date

    from pipelines.serving.requests import file_request

    request = file_request("edu", "silver.psb_hukou", ["full_name"], "x", "y", date(2030, 1, 1), "edu_officer",
                           settings=portal)["request_id"]
    http, token = _session(portal, "psb_analyst")
    answer = http.post(_url(portal, f"/requests/{request}/decision"), data={"decision": "approve", "reason": "r",
                                                                            "csrf": token}, allow_redirects=False)
    assert answer.status_code == 403 and "only a governor" in answer.text
    http, token = _session(portal, "hrss_officer")             # hrss owns no column of it
    answer = http.post(_url(portal, f"/requests/{request}/consent"), data={"csrf": token}, allow_redirects=False)
    assert answer.status_code == 403 and "belong to psb" in answer.text
    # a page shows no text from its URL
    assert "INJECTED" not in http.get(_url(portal, "/catalog/silver.psb_hukou?form_errors=INJECTED")).text
    assert "INJECTED" not in http.get(_url(portal, "/issues/GI-hrss00001?error=INJECTED")).text


def test_every_page_view_is_in_the_query_audit_under_the_user(portal):
    """The portal reads as the user: its queries are audited with the user as
    principal and the portal as the client, like any department's."""
    import time
    from datetime import UTC, datetime, timedelta

    from pipelines.lake.delta import read_delta_rows
    from pipelines.lake.paths import governance_path

    http, _ = _session(portal, "hrss_officer")
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=5)     # the table's times: naive UTC
    assert http.get(_url(portal, "/issues/GI-hrss00001")).status_code == 200
    deadline, found = time.monotonic() + 60, []
    while not found and time.monotonic() < deadline:
        time.sleep(2)
        found = [r for r in read_delta_rows(governance_path("query_audit", portal))
                 if r["source"] == "govlake-portal" and r["principal"] == "hrss_officer"
                 and r["created_at"] and r["created_at"] >= since
                 and "lake.governance.issues" in (r["tables_read"] or [])]
    assert found, "the issue page's query was not in governance.query_audit within 60 s"
    assert all(r["department"] == "hrss" and not r["access_denied"] for r in found)


def test_forms_without_their_csrf_token_or_a_forged_session_are_refused(portal):
    http, token = _session(portal, "psb_analyst")
    for data in ({"action": "acknowledged"}, {"action": "acknowledged", "csrf": token[:-2] + "xx"}):
        answer = http.post(_url(portal, "/issues/GI-psb000001/actions"), data=data, allow_redirects=False)
        assert answer.status_code == 403 and "CSRF" in answer.text
    forged = requests.Session()
    forged.trust_env, forged.verify = False, str(certificate_path(portal))
    forged.cookies.set("__Host-govlake_portal", "guessed-session-id")
    assert "/login" in forged.get(_url(portal, "/home")).url
    answer = forged.post(_url(portal, "/issues/GI-psb000001/actions"), data={"action": "acknowledged",
                                                                           "csrf": token}, allow_redirects=False)
    assert answer.status_code == 401


def test_pages_forbid_outside_scripts_and_frames_and_login_does_not_redirect_off_the_site(portal):
    http, _ = _session(portal, "psb_analyst")
    page = http.get(_url(portal, "/home"))
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store" and "server" not in {h.lower() for h in page.headers}
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
    fresh = requests.Session()
    fresh.trust_env, fresh.verify = False, str(certificate_path(portal))
    token = re.search(r'name="csrf" value="([^"]+)"', fresh.get(_url(portal, "/login")).text).group(1)
    answer = fresh.post(_url(portal, "/login"), data={
        "username": "psb_analyst", "password": password_for("psb_analyst", portal), "csrf": token,
        "next": "//evil.example/"}, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/home"
    # the administrator is no department user: the portal is not a way around the CLI
    token = re.search(r'name="csrf" value="([^"]+)"', fresh.get(_url(portal, "/login")).text).group(1)
    answer = fresh.post(_url(portal, "/login"), data={"username": "govlake", "password": password_for("govlake",
                                                      portal), "csrf": token})
    assert answer.status_code == 401 and "no department user" in answer.text
