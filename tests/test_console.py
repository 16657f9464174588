"""The review console in a real headless Chromium (Debian's) against a real server process.

The tests run in order on one server: the cast is enrolled from the people page, a group
photo is identified over the API, and the queue, decisions, ledger, two-reviewer rule,
merge and split, roles, CSRF, escaping, sign-out, keyboard use and accessibility are
checked in the browser. Screenshots go to ``.cache/console-screenshots/`` (not committed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from faceledger import Client
from tests.test_api import Server, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[1] / ".cache" / "console-screenshots"
CAST = ["amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart"]
SCRIPT = "<script>alert(1)</script>"  # refused as a name ('/'), echoed in the refusal
XSS = "<img src=x onerror=alert(1)><script>alert(2)<\\script>"  # a valid name


@dataclass
class Console:
    server: Server
    browser: Browser
    keys: dict[str, str]
    faces: Path
    dialogs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def sign_in(self, who: str) -> Page:
        """A fresh browser context signed in with the key of ``who``."""
        context = self.browser.new_context()
        page = context.new_page()
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.goto(f"{self.url}/ui/sign-in")
        page.get_by_label("API key").fill(self.keys[who])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/ui/review$"))
        return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def csrf_of(page: Page) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, playwright: Playwright
) -> Iterator[Console]:
    data = tmp_path_factory.mktemp("console") / "data"
    server = start_server(data, FACELEDGER_RATE_LIMIT="0", FACELEDGER_KEEP_VIDEOS="true")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        headers = {"X-API-Key": server.admin_key}
        body = {"name": "bbt", "store_images": True, "require_consent": True}
        httpx.post(f"{server.url}/v1/collections", json=body, headers=headers).raise_for_status()
        keys = {"admin": server.admin_key}
        with server.client() as admin:
            for who, role in (
                ("enroller", "enroller"),
                ("searcher", "searcher"),
                ("second", "searcher"),
                ("third", "searcher"),
                ("auditor", "auditor"),
            ):
                keys[who] = admin.create_key(role, name=who)["key"]
        yield Console(server, browser, keys, faces_dir / "faceapi_bbt")
    finally:
        browser.close()
        stop_server(server)


def test_sign_in_sets_a_strict_http_only_cookie(console: Console) -> None:
    page = console.sign_in("admin")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "fl_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain HTTP here; over TLS it is Secure (test below)
    assert page.evaluate("document.cookie") == ""  # no script can read it
    page.context.close()
    bad = console.browser.new_page()
    bad.goto(f"{console.url}/ui/sign-in")
    bad.get_by_label("API key").fill("fl_not_a_key")
    bad.get_by_role("button", name="Sign in").click()
    assert "Unknown or revoked API key" in bad.locator("[role=alert]").inner_text()
    shot(bad, "sign-in")
    bad.close()


def test_enrol_the_cast_from_the_people_page(console: Console) -> None:
    page = console.sign_in("enroller")
    for name in CAST:
        page.goto(f"{console.url}/ui/people/bbt")
        page.get_by_label("Person (new or existing)").fill(name)
        page.get_by_label("Consent reference").fill(f"consent form {name}")
        photos = sorted((console.faces / "identities" / name).iterdir())[:4]
        page.get_by_label("Photos").set_input_files([str(p) for p in photos])
        with page.expect_navigation(wait_until="load"):  # count the whole answer page
            page.get_by_role("button", name="Enrol", exact=True).click()
        assert page.locator("ul.outcome li", has_text="enrolled as face").count() == 4, name
    page.goto(f"{console.url}/ui/people/bbt")
    assert page.locator("table.persons tbody tr").count() == len(CAST)
    shot(page, "people")
    page.get_by_role("link", name="sheldon").click()
    page.wait_for_load_state("load")  # every image fetched (a loaded machine was slower)
    assert page.locator("table.faces img").count() == 4
    assert page.evaluate(
        "[...document.querySelectorAll('table.faces img')].every(i => i.naturalWidth > 0)"
    )
    shot(page, "person")
    page.context.close()


def _identify(console: Console, image: Path) -> list[str]:
    with Client(console.url, console.keys["searcher"]) as c:
        result = c.identify("bbt", image, purpose="console test", case="C-16")
    return [f["candidates"][0]["person"] for f in result["faces"] if f["candidates"]]


def test_identify_fills_the_queue_and_decisions_reach_the_ledger(console: Console) -> None:
    found = _identify(console, console.faces / "group" / "bbt1.jpg")
    assert found
    page = console.sign_in("searcher")
    rows = page.locator("table.queue tr.item")
    assert rows.count() >= len(found) >= 2
    page.wait_for_load_state("load")
    assert page.evaluate(
        "[...document.querySelectorAll('img.crop')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "queue")
    first, second = (rows.nth(i).get_attribute("data-item") for i in range(2))

    # Keyboard only: Tab to the decision, Space to choose "confirm", type a note, Enter.
    page.goto(f"{console.url}/ui/review/{first}")
    shot(page, "item")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "decision":
            break
    page.keyboard.press("Space")
    assert page.evaluate("document.activeElement.value") == "confirm"
    page.keyboard.press("Tab")
    page.keyboard.type("same face, checked by keyboard")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"done={first}"))

    page.goto(f"{console.url}/ui/review/{second}")
    page.get_by_label("Reject: not this person").check()
    page.get_by_label("Note (optional)").fill("different person")
    page.get_by_role("button", name="Record decision").click()
    page.wait_for_url(re.compile(rf"done={second}"))
    assert page.locator(f"tr.item[data-item='{first}']").count() == 0
    assert page.locator(f"tr.item[data-item='{second}']").count() == 0
    page.context.close()

    audit = console.sign_in("auditor")
    audit.goto(f"{console.url}/ui/audit?operation=review.decide")
    assert audit.locator("tr[data-op='review.decide']").count() == 2
    assert "Verified" in audit.locator("#verification").inner_text()
    shot(audit, "audit")
    audit.locator("tr[data-op='review.decide'] a").last.click()
    detail = audit.locator("main").inner_text()
    assert '"decision": "reject"' in detail and '"note": "different person"' in detail
    assert re.search(r'"person": "p_[0-9a-f]+"', detail)
    assert not any(name in detail for name in CAST)  # the ledger names no one
    audit.context.close()


def _decide(page: Page, url: str, item: str, label: str) -> str:
    page.goto(f"{url}/ui/review/{item}")
    page.get_by_label(label).check()
    page.get_by_role("button", name="Record decision").click()
    page.goto(f"{url}/ui/review/{item}")
    return page.locator("#status").inner_text()


def test_a_two_reviewer_collection_confirms_only_when_a_second_key_agrees(
    console: Console,
) -> None:
    admin = console.sign_in("admin")
    admin.goto(f"{console.url}/ui/people/bbt")
    admin.get_by_label("Reviewers who must agree").select_option("2")
    admin.locator("#review-settings button").click()
    admin.context.close()
    before = {  # items still waiting from the earlier search
        i.get_attribute("data-item") for i in console.sign_in("searcher").locator("tr.item").all()
    }
    assert _identify(console, console.faces / "group" / "bbt2.jpg")
    first, second, third = (console.sign_in(k) for k in ("searcher", "second", "third"))
    items = [
        i.get_attribute("data-item")
        for i in first.locator("tr.item").all()
        if i.get_attribute("data-item") not in before
    ]
    assert len(items) >= 2
    agreed, disputed = str(items[0]), str(items[1])
    confirm = "Confirm: this is"
    assert _decide(first, console.url, agreed, confirm) == "open"  # one review is not enough
    assert first.locator("form.decide").count() == 0  # the same key cannot review twice
    assert _decide(second, console.url, agreed, confirm) == "confirmed"
    assert _decide(first, console.url, disputed, confirm) == "open"
    assert _decide(third, console.url, disputed, "Reject: not this person") == "disputed"
    assert "The reviewers disagree" in third.locator("main").inner_text()
    assert third.locator("ul.decisions li").count() == 2
    shot(third, "disputed")
    third.goto(f"{console.url}/ui/review")
    assert third.locator(f"tr.item[data-item='{disputed}']").count() == 1  # still shown
    for page in (first, second, third):
        page.context.close()


def test_merge_two_persons_and_split_a_face_off(console: Console) -> None:
    page = console.sign_in("enroller")
    before = {}  # counted here: other tests of the module may have added faces
    for name in ("stuart", "raj"):
        page.goto(f"{console.url}/ui/people/bbt/person?name={name}")
        before[name] = page.locator("table.faces tbody tr").count()
    assert before["stuart"] >= 1 and before["raj"] >= 1
    page.goto(f"{console.url}/ui/people/bbt")
    page.get_by_label("Move every face of").select_option("stuart")
    page.get_by_label("into").select_option("raj")
    page.get_by_role("button", name="Merge").click()
    assert page.locator("#person-name").inner_text() == "raj"
    merged = before["stuart"] + before["raj"]
    assert page.locator("table.faces tbody tr").count() == merged
    face = page.locator("table.faces tbody tr").last.get_attribute("data-face")
    row = page.locator(f"tr[data-face='{face}']")
    row.get_by_label("Person").fill("stuart")
    row.get_by_label("Consent (if new)").fill("consent form stuart")
    with page.expect_navigation(wait_until="load"):
        row.get_by_role("button", name=f"Move face {face}").click()
    assert page.locator("#person-name").inner_text() == "stuart"
    assert page.locator("table.faces tbody tr").count() == 1
    page.goto(f"{console.url}/ui/people/bbt/person?name=raj")
    assert page.locator("table.faces tbody tr").count() == merged - 1
    page.context.close()
    with Client(console.url, console.keys["auditor"]) as c:
        ops = [e["operation"] for e in c.audit(limit=1000)["entries"]]
    assert "person.merge" in ops and "face.move" in ops


def _post(page: Page, path: str, form: dict[str, str]) -> int:
    return page.request.post(f"{page.url.split('/ui')[0]}{path}", form=form).status


def test_each_role_can_do_what_its_key_may_and_nothing_more(console: Console) -> None:
    searcher = console.sign_in("searcher")
    token = csrf_of(searcher)
    searcher.goto(f"{console.url}/ui/people/bbt")
    assert "may not do this" in searcher.locator("[role=alert]").inner_text()
    form = {"csrf": token, "name": "amy", "confirm": "amy"}
    assert _post(searcher, "/ui/people/bbt/delete-person", form) == 403  # cannot delete
    searcher.goto(f"{console.url}/ui/audit")
    assert "may not do this" in searcher.locator("[role=alert]").inner_text()
    auditor = console.sign_in("auditor")
    assert "may not do this" in auditor.locator("[role=alert]").inner_text()  # no queue
    auditor.goto(f"{console.url}/ui/audit")
    token = csrf_of(auditor)
    photo = sorted((console.faces / "identities" / "amy").iterdir())[4]
    refused = auditor.request.post(
        f"{console.url}/ui/people/bbt/enrol",
        multipart={
            "csrf": token,
            "name": "intruder",
            "consent": "none",
            "photos": {"name": photo.name, "mimeType": "image/png", "buffer": photo.read_bytes()},
        },
    )
    assert refused.status == 403 and "may not do this" in refused.text()  # cannot enrol
    enroller = console.sign_in("enroller")
    enroller.goto(f"{console.url}/ui/people/bbt")
    assert _post(enroller, "/ui/people/bbt/delete-person", {"name": "amy", "confirm": "amy"}) == 403
    enroller.goto(f"{console.url}/ui/people/bbt/person?name=amy")
    assert enroller.locator("#person-name").inner_text() == "amy"  # nothing was erased
    enroller.goto(f"{console.url}/ui/audit")
    assert "may not do this" in enroller.locator("[role=alert]").inner_text()
    for page in (searcher, auditor, enroller):
        page.context.close()


def test_a_script_in_a_name_is_shown_as_text(console: Console) -> None:
    page = console.sign_in("enroller")
    photo = console.faces / "expressions" / "happy.jpg"
    page.goto(f"{console.url}/ui/people/bbt")
    page.get_by_label("Person (new or existing)").fill(SCRIPT)
    page.get_by_label("Consent reference").fill("consent form")
    page.get_by_label("Photos").set_input_files(str(photo))
    page.get_by_role("button", name="Enrol", exact=True).click()
    assert SCRIPT in page.locator("[role=alert]").inner_text()  # the refusal, as text
    page.goto(f"{console.url}/ui/people/bbt")
    page.get_by_label("Person (new or existing)").fill(XSS)
    page.get_by_label("Consent reference").fill("consent <b>form</b>")
    page.get_by_label("Photos").set_input_files(str(photo))
    page.get_by_role("button", name="Enrol", exact=True).click()
    assert page.get_by_role("heading", name=f"Enrolment of {XSS}").count() == 1
    page.goto(f"{console.url}/ui/people/bbt")
    assert page.get_by_role("link", name=XSS).count() == 1
    page.get_by_role("link", name=XSS).click()
    assert page.locator("#person-name").inner_text() == XSS
    assert page.locator("img[src=x]").count() == 0  # no element was injected
    page.context.close()
    found = _identify(console, photo)
    assert XSS in found
    reviewer = console.sign_in("second")
    assert reviewer.locator("tr.item", has_text=XSS).count() >= 1
    reviewer.locator("tr.item a", has_text=XSS).first.click()
    assert reviewer.get_by_role("heading", name=f"Is this {XSS}?").count() == 1
    reviewer.wait_for_timeout(300)
    assert console.dialogs == []  # no alert() ran anywhere
    reviewer.context.close()


def test_a_form_without_its_csrf_token_is_refused(console: Console) -> None:
    page = console.sign_in("enroller")
    page.goto(f"{console.url}/ui/people/bbt")
    page.evaluate("document.querySelector('#merge input[name=csrf]').remove()")
    page.get_by_label("Move every face of").select_option("amy")
    page.get_by_label("into").select_option("penny")
    page.get_by_role("button", name="Merge").click()
    assert "CSRF token is missing or wrong" in page.locator("[role=alert]").inner_text()
    page.goto(f"{console.url}/ui/people/bbt/person?name=amy")
    assert page.locator("#person-name").inner_text() == "amy"  # nothing was merged
    page.context.close()


def test_sign_out_invalidates_the_session(console: Console) -> None:
    page = console.sign_in("searcher")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "fl_session"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in$"))
    page.context.close()
    replay = console.browser.new_context()
    replay.add_cookies([cookie])  # a copy of the cookie taken before signing out
    stolen = replay.new_page()
    stolen.goto(f"{console.url}/ui/review")
    assert stolen.url.endswith("/ui/sign-in")
    replay.close()


def test_the_pages_pass_an_accessibility_check(console: Console) -> None:
    page = console.sign_in("admin")
    axe = Axe()
    pages = {
        "sign-in": "/ui/sign-in",
        "queue": "/ui/review",
        "item": "/ui/review/1",
        "people": "/ui/people/bbt",
        "person": "/ui/people/bbt/person?name=amy",
        "collections": "/ui/people",
        "audit": "/ui/audit",
        "entry": "/ui/audit/1",
        "accuracy": "/ui/accuracy",
    }
    problems = {}
    for name, path in pages.items():
        page.goto(f"{console.url}{path}")
        if name in ("queue", "accuracy", "collections", "entry"):
            shot(page, name)
        result = axe.run(page)
        if result.violations_count:
            problems[name] = [v["id"] for v in result.response["violations"]]
    assert problems == {}
    page.context.close()


def test_the_session_cookie_is_secure_over_tls(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from faceledger.api.app import create_app
    from faceledger.config import Settings

    app = create_app(Settings(data=tmp_path / "data"))
    with TestClient(app, base_url="https://console.test") as client:
        key = (tmp_path / "data" / "admin.key").read_text().strip()
        form = client.get("/ui/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        answer = client.post(
            "/ui/sign-in", data={"key": key, "csrf": csrf.group(1)}, follow_redirects=False
        )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "fl_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie


def test_name_an_unknown_cluster_from_group(console: Console, faces_dir: Path) -> None:
    johns = sorted((faces_dir / "dlib_examples" / "johns").glob("*/*.jpg"))
    person_of = {p.name: p.parent.name for p in johns}
    page = console.sign_in("admin")
    page.goto(f"{console.url}/ui/unknown")
    page.get_by_label("Photos to group by person").set_input_files([str(p) for p in johns])
    page.get_by_label("Purpose").fill("console test: unknown faces")
    # The answer is the same URL: wait for its whole page (one CI run counted the
    # clusters while the long page, its face crops inline, was still being parsed).
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Group faces").click()
    clusters = page.locator("section.cluster")
    assert clusters.count() >= 5
    shot(page, "unknown")
    first = clusters.first
    sources = [
        str(i.get_attribute("alt")).removeprefix("Face from ").split(". ", 1)[1]
        for i in first.locator("img").all()
    ]
    assert len({person_of[s] for s in sources}) == 1  # one John per cluster
    first.get_by_label("belongs").last.uncheck()  # mark one face as not belonging
    first.get_by_label("Collection").select_option("bbt")
    first.get_by_label("Name (new or existing person)").fill("first john")
    first.get_by_label("Consent reference").fill("consent form john")
    with page.expect_navigation(wait_until="load"):
        first.get_by_role("button", name="Name unknown person 1").click()
    assert page.locator("ul.outcome li", has_text="enrolled as face").count() == len(sources) - 1
    page.goto(f"{console.url}/ui/people/bbt/person?name=first%20john")
    assert page.locator("table.faces tbody tr").count() == len(sources) - 1
    page.context.close()


def test_erase_a_person_after_confirmation(console: Console) -> None:
    assert "leonard" in _identify(
        console, console.faces / "identities" / "leonard" / "leonard5.png"
    )
    queued = console.sign_in("searcher")
    leonard_items = queued.locator("tr.item[data-person='leonard']").count()
    queued.context.close()
    page = console.sign_in("enroller")
    page.goto(f"{console.url}/ui/people/bbt/person?name=leonard")
    page.get_by_label("Type the name to confirm").fill("leo")
    page.get_by_role("button", name="Erase person").click()
    assert "type the person's name" in page.locator("[role=alert]").inner_text()
    page.goto(f"{console.url}/ui/people/bbt/person?name=leonard")
    page.get_by_label("Type the name to confirm").fill("leonard")
    page.get_by_role("button", name="Erase person").click()
    page.wait_for_url(re.compile(r"/ui/people/bbt$"))
    assert page.get_by_role("link", name="leonard", exact=True).count() == 0
    page.context.close()
    after = console.sign_in("searcher")
    assert after.locator("tr.item[data-person='leonard']").count() == 0
    after.context.close()
    assert leonard_items >= 1  # their review items (and probe crops) went with them


def _axe_problems(page: Page) -> list[str]:
    result = Axe().run(page)
    return [v["id"] for v in result.response["violations"]] if result.violations_count else []


def _player_time(page: Page) -> float:
    """Where the page's player stands once it has the video's metadata (polled from here:
    wait_for_function evaluates strings in the page, which the console's CSP refuses)."""
    for _ in range(300):
        if page.evaluate("document.querySelector('video, audio').readyState") >= 1:
            break
        page.wait_for_timeout(100)
    return float(page.evaluate("document.querySelector('video, audio').currentTime"))


def _index_clip(
    console: Console,
    clip: Path,
    *,
    ocr: bool = False,
    speech: bool = False,
    kind: str = "video/mp4",
) -> str:
    """Index ``clip`` as a searcher's video job (faces at 2 fps) and wait for it."""
    headers = {"X-API-Key": console.keys["searcher"], "Content-Type": kind}
    params = {"collection": "bbt", "purpose": "console test", "fps": "2"}
    params |= {"ocr": str(ocr).lower(), "speech": str(speech).lower()}
    accepted = httpx.post(
        f"{console.url}/v1/videos", params=params, headers=headers, content=clip.read_bytes()
    )
    job = str(accepted.json()["job"])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = httpx.get(f"{console.url}/v1/videos/{job}", headers=headers).json()["status"]
        if status not in ("queued", "running"):
            break
        time.sleep(1)
    assert status == "done"
    return job


def test_a_video_timeline_shows_who_appears_when(console: Console, faces_dir: Path) -> None:
    examples = faces_dir / "face_recognition_examples"
    lin = "lin_manuel_miranda"
    with Client(console.url, console.keys["enroller"]) as c:
        c.create_person("bbt", lin, consent="consent form lin")
        c.enroll("bbt", lin, examples / "identities" / lin / "lin-manuel-miranda.png")
    clip = examples / "video" / "short_hamilton_clip.mp4"
    job = _index_clip(console, clip)

    page = console.sign_in("searcher")
    page.get_by_role("link", name="Videos").click()
    assert _axe_problems(page) == []
    shot(page, "videos")
    page.get_by_role("link", name=job).click()
    assert _axe_problems(page) == []
    rows = page.locator("tr.appearance")
    assert rows.count() >= 2  # lin and at least one unknown person
    assert page.evaluate(
        "[...document.querySelectorAll('tr.appearance img')].every(i => i.naturalWidth > 0)"
    )
    row = page.locator(f"tr.appearance[data-label='{lin}']")
    assert row.locator("img").count() == 1
    shot(page, "video")

    # Jump to lin's close-up: the page comes back with the player starting there.
    jump = row.locator("a.jump").last
    start, end = re.findall(r"t=([\d.]+)&end=([\d.]+)", str(jump.get_attribute("href")))[0]
    assert float(end) - float(start) >= 3.0  # the close-up (3.8-7.7 s)
    jump.click()
    page.wait_for_url(re.compile(rf"\?t={start}&end={end}#player$"))
    video = page.locator("video")
    assert str(video.get_attribute("src")).endswith(f"#t={start},{end}")
    at = _player_time(page)
    assert abs(at - float(start)) < 0.5, at  # Chromium seeked there (Range requests)
    media = page.request.get(f"{console.url}/ui/videos/{job}/file", headers={"Range": "bytes=0-99"})
    assert (
        media.status == 206
        and media.headers["content-range"] == f"bytes 0-99/{clip.stat().st_size}"
    )
    spans = row.locator("a.jump").evaluate_all("links => links.map(a => a.textContent)")

    # The review item the video made for lin links to the same moments of the same job.
    page.goto(f"{console.url}/ui/review")
    video_item = page.locator(f"tr.item[data-person='{lin}']", has_text="video.identify")
    item_id = str(video_item.first.get_attribute("data-item"))
    page.goto(f"{console.url}/ui/review/{item_id}")
    assert _axe_problems(page) == []
    seen = page.locator("section.seen-in")
    assert seen.get_by_role("link", name=job).count() == 1
    assert seen.locator("a.jump").evaluate_all("l => l.map(a => a.textContent)") == spans
    seen.locator("a.jump").last.click()
    page.wait_for_url(re.compile(rf"/ui/videos/{job}\?t={start}&end={end}#player$"))
    page.context.close()

    other = console.sign_in("second")  # another searcher's key sees only its own jobs
    other.goto(f"{console.url}/ui/review/{item_id}")
    assert other.locator("section.seen-in a.jump").count() == 0  # no job of its own to link
    assert "no video job of it that you may open" in other.locator("section.seen-in").inner_text()
    other.goto(f"{console.url}/ui/videos")
    assert other.get_by_role("link", name=job).count() == 0
    assert other.request.get(f"{console.url}/ui/videos/{job}/file").status == 404
    other.context.close()
    auditor = console.sign_in("auditor")  # no video jobs over the API, none here
    auditor.goto(f"{console.url}/ui/videos/{job}")
    assert "may not do this" in auditor.locator("[role=alert]").inner_text()
    assert auditor.request.get(f"{console.url}/ui/videos/{job}/file").status == 403
    auditor.context.close()

    with Client(console.url, console.keys["admin"]) as c:
        c.delete_person("bbt", lin)
    (console.server.data / "jobs" / f"{job}.video").unlink()  # as with KEEP_VIDEOS off
    admin = console.sign_in("admin")  # an administrator sees every key's jobs
    admin.goto(f"{console.url}/ui/videos/{job}")
    assert admin.locator(f"tr.appearance[data-label='{lin}']").count() == 0
    erased = admin.locator("tr.appearance[data-label='erased person']")
    assert erased.count() == 1 and erased.locator("img").count() == 0
    assert lin not in admin.locator("main").inner_text()
    assert admin.locator("video").count() == 0 and admin.locator("#no-player").count() == 1
    assert admin.request.get(f"{console.url}/ui/videos/{job}/file").status == 404
    admin.context.close()


def test_a_video_timeline_shows_the_text_on_screen_and_the_speech(
    console: Console, tmp_path: Path
) -> None:
    from tests.media_fixtures import (
        JFK,
        SPEECH_VIDEO_FACE,
        SPEECH_VIDEO_TEXT,
        SPEECH_VIDEO_WORDS,
        speech_video,
    )

    clip = speech_video(tmp_path / "talk.mp4", console.faces.parent / SPEECH_VIDEO_FACE)
    job = _index_clip(console, clip, ocr=True, speech=True)
    page = console.sign_in("searcher")
    page.goto(f"{console.url}/ui/videos/{job}")
    assert page.locator("table.text tr.shown", has_text=SPEECH_VIDEO_TEXT).count() == 1
    spoken = page.locator("table.speech tr.spoken")
    assert spoken.count() >= 1 and page.locator("#speech-problem").count() == 0
    said = page.locator("table.speech").inner_text().lower()
    assert all(word in said for word in SPEECH_VIDEO_WORDS), said
    assert "en" in spoken.first.locator("td").nth(1).inner_text()
    assert _axe_problems(page) == []
    shot(page, "video-speech")
    track = page.locator("video track[kind=captions]")
    vtt = page.request.get(f"{console.url}{track.get_attribute('src')}").text()
    assert vtt.startswith("WEBVTT") and "country" in vtt.lower()
    last = spoken.last.locator("a.jump")  # the player starts where that was said
    start = re.findall(r"t=([\d.]+)&", str(last.get_attribute("href")))[0]
    assert float(start) >= 1.0  # a later segment: the player really moves
    last.click()
    at = _player_time(page)
    assert abs(at - float(start)) < 0.5, at

    audio = _index_clip(console, JFK, speech=True, kind="audio/flac")  # speech alone
    page.goto(f"{console.url}/ui/videos/{audio}?t=5.00&end=8.00")
    assert page.locator("audio").count() == 1 and page.locator("video").count() == 0
    assert page.get_by_role("heading", name="Who appears when").count() == 0
    assert "country" in page.locator("table.speech").inner_text().lower()
    assert abs(_player_time(page) - 5.0) < 0.5
    assert _axe_problems(page) == []
    played = page.request.get(f"{console.url}/ui/videos/{audio}/file")
    assert played.headers["content-type"] == "audio/flac"
    page.context.close()


def test_a_kept_upload_is_served_as_what_it_is(tmp_path: Path, faces_dir: Path) -> None:
    import wave

    from faceledger.api.ui.videos import media_type
    from tests.media_fixtures import AUDIO

    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0" * 32)
    clip = faces_dir / "face_recognition_examples" / "video" / "short_hamilton_clip.mp4"
    files = {
        clip: "video/mp4",
        AUDIO / "jfk.flac": "audio/flac",
        AUDIO / "hotwords.mp3": "audio/mpeg",
        tmp_path / "a.wav": "audio/wav",
        faces_dir / "skimage_data" / "astronaut.png": "application/octet-stream",
    }
    assert {f: media_type(f.read_bytes()[:12]) for f in files} == files


def test_a_stored_job_result_reads_as_a_timeline() -> None:
    from faceledger.api.ui.timeline import BAR, MIN_MARK, read_timeline

    people = [
        {"label": "amy", "person": "amy", "thumbnail": "/9j/", "intervals": [[1.0, 3.0]]},
        {"label": "erased person", "person": None, "thumbnail": "", "intervals": [[9.99, 10.0]]},
        {"label": "bad", "intervals": [[5.0, 4.0], ["x", 1], [2.0]]},  # dropped, not a 500
    ]
    silent = read_timeline({"duration": 10.0, "people": people, "text": []})
    assert silent.speech is None  # not indexed, unlike an empty transcript
    amy, erased, bad = silent.people
    assert amy.identified and (amy.spans[0].x, amy.spans[0].width) == (100.0, 200.0)
    assert amy.spans[0].query == "t=1.00&end=3.00"
    assert not erased.identified and erased.thumbnail == ""
    assert (erased.spans[0].x, erased.spans[0].width) == (BAR - MIN_MARK, MIN_MARK)  # seen
    assert bad.spans == []
    said = {"start": 0.5, "end": 12.0, "language": "de", "language_probability": 0.9}
    said |= {"text": "Guten Tag --> 1", "text_en": "Good day --> 1", "confidence": 0.8}
    spoken = read_timeline({"people": people, "transcript": [said], "speech_problem": None})
    assert spoken.duration == 12.0  # no duration stored: the last interval's end
    assert [s.translated for s in spoken.speech or []] == [True]
    assert spoken.languages == ["de"]
    vtt = spoken.captions(english=True)
    assert vtt.startswith("WEBVTT") and "00:00:00.500 --> 00:00:12.000\nGood day → 1" in vtt
    empty = read_timeline({"transcript": [], "speech_problem": "the video has no audio track"})
    assert empty.speech == [] and empty.speech_problem == "the video has no audio track"
