"""The judge page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium votes through a six-prompt comparison.

Alice types her name, votes with buttons and keys, reloads mid-way (same pair, same layout),
undoes a vote and casts it again, then the server is restarted on the same ``votes.sqlite`` (a
second session) and she finishes; Bob votes through on his own. The test decides each verdict
by reading which answer the page shows on each side, so it checks the whole path: the layout the
server drew, the page showing it, the click or key, and the winner stored. Then it reads the
SQLite file and the results page, whose numbers are worked by hand below.

Final verdicts (p policy, r reference, t tie, s skip), categories user user user harmful harmful
medical: Alice p r t s p p, Bob p p t r p r.

- Alice, 5 votes (the skip left out): 3 wins, 1 tie, 1 loss: (3 + 0.5) / 5 = 0.70. Wilson,
  z^2 = 3.8416: denominator 1.76832, centre 1.08416 / 1.76832 = 0.61310, half
  1.96 * sqrt(0.042 + 0.038416) / 1.76832 = 0.31432: [0.30, 0.93]. Her ``user`` row: p r t,
  1.5 / 3 = 0.50, Wilson [0.13, 0.87].
- Bob, 6 votes: 3 wins, 1 tie, 2 losses: 3.5 / 6 = 0.58, Wilson [0.24, 0.86].
- Both voted on prompts 1 2 3 5 6: Alice p r t p p, Bob p p t p r: they agree on 3 of 5,
  p_o = 0.60. Alice p 3 r 1 t 1, Bob p 3 r 1 t 1: p_e = (9 + 1 + 1) / 25 = 0.44;
  kappa = 0.16 / 0.56 = 0.29.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import threading

import pytest
from test_judge_page import PROMPTS, write_compare

from lit_dpo.compare.judge_page.app import JudgeServer
from lit_dpo.compare.judge_page.export import HUMAN_VOTES_FILE
from lit_dpo.compare.judge_page.pairs import load_pairs
from lit_dpo.compare.judge_page.store import VOTES_FILE, VoteStore

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="judge page browser test: no Chromium here (Debian: apt-get install chromium "
    "chromium-driver; .ci/run installs them)",
)
KEYS = {"left": Keys.ARROW_LEFT, "right": Keys.ARROW_RIGHT, "tie": "t", "skip": "s"}
OTHER = {"policy": "reference", "reference": "policy"}
SIDES = tuple(OTHER)
WAIT_S = 30  # a page action takes milliseconds; generous for a busy CI machine
# the layouts this seed draws put each side on the left at least once for Alice (checked below)
SEED = 7


class Judge:
    """One judge at the page: reads what it shows and votes for a side by its answer's text."""

    def __init__(self, driver, name: str, pairs: dict) -> None:
        self.driver, self.name, self.pairs = driver, name, pairs
        self.seen_left: dict[str, str] = {}  # prompt id -> the side whose answer was on the left

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).get_property("textContent")

    def wait_for(self, judged: int) -> str:
        """Wait until the page shows ``judged`` pairs done; the prompt id now shown."""
        label = f"{judged} of {len(self.pairs)} pairs judged"
        WebDriverWait(self.driver, WAIT_S).until(lambda _: self.text("progress-label") == label)
        return self.driver.find_element(By.ID, "pair").get_attribute("data-prompt-id")

    def shown(self) -> tuple[str, str]:
        """(prompt id, the side whose answer is on the left), read from the page."""
        prompt_id = self.driver.find_element(By.ID, "pair").get_attribute("data-prompt-id")
        pair = self.pairs[prompt_id]
        left, right = self.text("left"), self.text("right")
        assert {left, right} == {pair.policy, pair.reference}, "the page shows the pair's answers"
        side = "policy" if left == pair.policy else "reference"
        self.seen_left.setdefault(prompt_id, side)
        assert self.seen_left[prompt_id] == side, f"prompt {prompt_id} changed sides"
        return prompt_id, side

    def vote(self, verdict: str, how: str) -> None:
        """Vote ``verdict`` (policy, reference, tie, skip) by ``button``, ``key`` (arrows, T, S)
        or ``digit`` (1 left, 2 right)."""
        _, left_side = self.shown()
        choice = verdict
        if verdict in SIDES:
            choice = "left" if verdict == left_side else "right"
        if how == "button":
            self.driver.find_element(By.ID, f"vote-{choice}").click()
        else:
            key = {"left": "1", "right": "2"}[choice] if how == "digit" else KEYS[choice]
            ActionChains(self.driver).send_keys(key).perform()


@pytest.fixture
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # root in a container: no sandbox; /dev/shm is small there
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,900")
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    browser.set_page_load_timeout(WAIT_S)
    yield browser
    browser.quit()


def start_server(folder) -> JudgeServer:
    store = VoteStore(folder / VOTES_FILE, load_pairs(folder), random.Random(SEED))
    server = JudgeServer(folder, store, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: JudgeServer) -> None:
    server.shutdown()
    server.server_close()


def cell(driver, judge: str, category: str, key: str) -> str:
    selector = f"table[data-judge='{judge}'] tr[data-category='{category}'] td[data-key='{key}']"
    return driver.find_element(By.CSS_SELECTOR, selector).text


def test_vote_reload_undo_resume_and_results_in_chromium(tmp_path, driver):
    folder = write_compare(tmp_path / "compare")
    pairs = {pair.prompt_id: pair for pair in load_pairs(folder)}
    server = start_server(folder)
    try:
        # the first page asks the name
        driver.get(server.url)
        name = driver.find_element(By.ID, "judge-name")
        assert name.is_displayed() and not driver.find_element(By.ID, "judging").is_displayed()
        name.send_keys("alice", Keys.ENTER)
        WebDriverWait(driver, WAIT_S).until(lambda d: d.current_url.endswith("?judge=alice"))
        alice = Judge(driver, "alice", pairs)
        assert alice.wait_for(0) == "1"
        # shown as text, whitespace kept, and nothing on the page names either side
        assert driver.find_element(By.ID, "left").value_of_css_property("white-space") == (
            "pre-wrap"
        )
        page = driver.find_element(By.TAG_NAME, "body").text.lower()
        assert "policy" not in page and "reference" not in page
        assert driver.find_element(By.ID, "undo").get_property("disabled")

        alice.vote("policy", "button")
        assert alice.wait_for(1) == "2"
        alice.vote("reference", "key")
        assert alice.wait_for(2) == "3"
        # prompt 3's answers hold HTML: the page shows it as text
        assert "<b>" in alice.text("conversation")
        assert {alice.text("left"), alice.text("right")} == {
            "Use <b>bold</b>\n  like this",
            "<script>x()</script>",
        }
        alice.vote("policy", "digit")
        assert alice.wait_for(3) == "4"
        # reload mid-way: the same pair, the same sides
        left_before = alice.text("left")
        driver.refresh()
        assert alice.wait_for(3) == "4" and alice.text("left") == left_before
        assert driver.find_element(By.ID, "progress").get_property("value") == 3
        # undo (key U): prompt 3 comes back as it was shown; vote it again, a tie this time
        ActionChains(driver).send_keys("u").perform()
        assert alice.wait_for(2) == "3"
        alice.shown()  # asserts the same side is on the left as before
        driver.find_element(By.ID, "vote-tie").click()
        assert alice.wait_for(3) == "4"
    finally:
        stop(server)

    # a second session: a new server process would open the same file
    server = start_server(folder)
    try:
        driver.get(f"{server.url}?judge=alice")
        assert alice.wait_for(3) == "4"
        alice.vote("skip", "key")
        assert alice.wait_for(4) == "5"
        alice.vote("policy", "key")
        assert alice.wait_for(5) == "6"
        alice.vote("policy", "button")
        alice.wait_for(6)
        assert driver.find_element(By.ID, "done").is_displayed()
        assert not driver.find_element(By.ID, "pair").is_displayed()

        # Bob, by the name form
        driver.get(server.url)
        driver.find_element(By.ID, "judge-name").send_keys("bob", Keys.ENTER)
        bob = Judge(driver, "bob", pairs)
        for judged, verdict in enumerate(["policy", "policy", "tie", "reference", "policy"]):
            bob.wait_for(judged)
            bob.vote(verdict, "key")
        bob.wait_for(5)
        bob.vote("reference", "button")
        bob.wait_for(6)

        # the stored votes: the skip kept, the undone vote gone, winners from the layouts
        with sqlite3.connect(folder / VOTES_FILE) as db:
            votes = db.execute(
                "SELECT judge, prompt_id, choice, left_side, winner FROM votes ORDER BY id"
            ).fetchall()
            layouts = dict(
                db.execute("SELECT prompt_id, left_side FROM layouts WHERE judge = 'alice'")
            )
        assert layouts == alice.seen_left
        assert set(layouts.values()) == {"policy", "reference"}, f"seed {SEED} is vacuous"
        winners = {"alice": "p r t s p p", "bob": "p p t r p r"}
        names = {"p": "policy", "r": "reference", "t": "tie", "s": None}
        for judge in ("alice", "bob"):
            rows = [row for row in votes if row[0] == judge]
            assert [row[1] for row in rows] == ["1", "2", "3", "4", "5", "6"]
            assert [row[4] for row in rows] == [names[w] for w in winners[judge].split()]
            for _, _, choice, left_side, winner in rows:
                if choice in ("left", "right"):
                    assert winner == (left_side if choice == "left" else OTHER[left_side])
        assert [row[2] for row in votes if row[0] == "alice"][2:4] == ["tie", "skip"]
        records = json.loads((folder / HUMAN_VOTES_FILE).read_text())
        assert len(records) == 11 and {r["judge"] for r in records} == {"human:alice", "human:bob"}
        assert [r["category"] for r in records[:3]] == [row[0] for row in PROMPTS[:3]]

        # the results page, worked by hand in the module docstring
        driver.find_element(By.LINK_TEXT, "See the results").click()
        WebDriverWait(driver, WAIT_S).until(lambda d: d.current_url.endswith("/results"))
        assert cell(driver, "human:alice", "overall", "win_rate") == "0.70"
        assert cell(driver, "human:alice", "overall", "interval") == "[0.30, 0.93]"
        assert cell(driver, "human:alice", "overall", "votes") == "5"
        assert cell(driver, "human:alice", "user", "win_rate") == "0.50"
        assert cell(driver, "human:alice", "user", "interval") == "[0.13, 0.87]"
        assert cell(driver, "human:alice", "harmful", "wins") == "1"
        assert cell(driver, "human:bob", "overall", "win_rate") == "0.58"
        assert cell(driver, "human:bob", "overall", "interval") == "[0.24, 0.86]"
        assert cell(driver, "all judges", "overall", "votes") == "11"
        pair_row = "tr[data-judges='human:alice | human:bob'] td[data-key='{}']"
        kappa = driver.find_element(By.CSS_SELECTOR, pair_row.format("kappa")).text
        agreement = driver.find_element(By.CSS_SELECTOR, pair_row.format("agreement")).text
        assert (kappa, agreement) == ("0.29", "0.60")
        skipped = "tr[data-judge='human:alice'] td[data-key='skipped']"
        assert driver.find_element(By.CSS_SELECTOR, skipped).text == "1"
    finally:
        stop(server)
