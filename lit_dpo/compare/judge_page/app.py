"""The judge page's HTTP server: the standard library's ``ThreadingHTTPServer`` on 127.0.0.1.

``lit-dpo serve`` uses FastAPI and uvicorn for an OpenAI-compatible API with streaming and
validation; this page is a few JSON and file routes, for which the standard library is enough: it
starts in milliseconds, knows its port at once when given ``--port 0`` (``server_address``), and
runs in a test's thread with no event loop. Votes carry no secret, but they and the answers stay on
the machine: the server binds the loopback address only, answers only requests addressed to it by
that name (a page elsewhere cannot rebind a domain to it and read it), and takes votes only as
``application/json``, which a page elsewhere cannot send without a CORS preflight this server
never allows.

Routes:
    ``GET /``: the page (it asks the judge's name, then keeps it in the URL, ``/?judge=NAME``).
    ``GET /static/judge.js``, ``/static/judge.css``: its script and style.
    ``GET /api/state?judge=NAME``: progress and the next pair, its left and right answers.
    ``POST /api/vote`` ``{"judge", "prompt_id", "choice"}``: record a vote; the next state.
    ``POST /api/undo`` ``{"judge"}``: delete the judge's last vote; the state, that pair again.
    ``GET /results``: the results page; ``GET /api/results``: its numbers as JSON.
    ``GET /votes.json``, ``GET /votes.csv``: every vote.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lit_dpo.compare.judge_page.export import human_votes, votes_csv, votes_json, write_human_votes
from lit_dpo.compare.judge_page.page import results_html
from lit_dpo.compare.judge_page.results import agreement, win_rates
from lit_dpo.compare.judge_page.store import VoteConflict, VoteError, VoteStore

HOST = "127.0.0.1"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/judge.js": ("judge.js", "text/javascript; charset=utf-8"),
    "/static/judge.css": ("judge.css", "text/css; charset=utf-8"),
}
MAX_BODY = 64 * 1024


class JudgeServer(ThreadingHTTPServer):
    """The server of one comparison's votes.

    Args:
        folder: the compare folder; ``human_votes.json`` is rewritten there after every change.
        store: the votes.
        port: port on 127.0.0.1; 0 takes a free one (see :attr:`url`).
    """

    daemon_threads = True

    def __init__(self, folder: str | Path, store: VoteStore, port: int) -> None:
        self.folder = Path(folder)
        self.store = store
        # one change and its human_votes.json at a time, so the file ends as the last change left
        self.change_lock = threading.Lock()
        super().__init__((HOST, port), JudgeHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def state(self, judge: str) -> dict:
        """What the page shows ``judge`` next: progress, and the pair (None when all are done)."""
        shown = self.store.next_pair(judge)
        judged, total = self.store.progress(judge)
        pair = None
        if shown is not None:
            pair = {
                "prompt_id": shown.pair.prompt_id,
                "category": shown.pair.category,
                "expect": shown.pair.expect,
                "messages": shown.pair.messages,
                "left": shown.left,
                "right": shown.right,
            }
        return {"judge": judge, "judged": judged, "total": total, "pair": pair}

    def write_human_votes(self) -> Path:
        return write_human_votes(self.folder, self.store.votes())


class JudgeHandler(BaseHTTPRequestHandler):
    server: JudgeServer
    server_version = "lit-dpo-judge"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self._addressed_to_us():
            return
        url = urlsplit(self.path)
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            page = resources.files(__package__).joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, page, content_type)
        elif url.path == "/api/state":
            judge = parse_qs(url.query).get("judge", [""])[0]
            self._answer(lambda: self.server.state(judge))
        elif url.path == "/results":
            votes = self.server.store.votes()
            page = results_html(votes, len(self.server.store.pairs))
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        elif url.path == "/api/results":
            records = human_votes(self.server.store.votes())
            self._json(
                HTTPStatus.OK, {"win_rates": win_rates(records), "agreement": agreement(records)}
            )
        elif url.path == "/votes.json":
            text = votes_json(self.server.store.votes())
            self._send(HTTPStatus.OK, text.encode(), "application/json", "votes.json")
        elif url.path == "/votes.csv":
            text = votes_csv(self.server.store.votes())
            self._send(HTTPStatus.OK, text.encode(), "text/csv; charset=utf-8", "votes.csv")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._addressed_to_us():
            return
        path = urlsplit(self.path).path
        if path not in ("/api/vote", "/api/undo"):
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})
            return
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if length > MAX_BODY:
                raise ValueError("too long")
            body = json.loads(self.rfile.read(length) or b"{}")
            judge = str(body["judge"])
            if path == "/api/vote":
                prompt_id, choice = str(body["prompt_id"]), str(body["choice"])
        except (ValueError, KeyError, TypeError):
            fields = "judge, prompt_id and choice" if path == "/api/vote" else "judge"
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"send a JSON object with {fields}"})
            return

        def change() -> dict:
            with self.server.change_lock:
                if path == "/api/vote":
                    self.server.store.cast(judge, prompt_id, choice)
                else:
                    self.server.store.undo(judge)
                self.server.write_human_votes()
            return self.server.state(judge)

        self._answer(change, judge)

    def _answer(self, make_state, judge: str | None = None) -> None:
        """Send ``make_state()``, or the store's refusal with the judge's current state."""
        try:
            self._json(HTTPStatus.OK, make_state())
        except VoteConflict as error:
            self._json(
                HTTPStatus.CONFLICT, {"error": str(error), "state": self.server.state(judge)}
            )
        except VoteError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})

    def _addressed_to_us(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host in (HOST, "localhost"):
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": f"open the page as {self.server.url}"})
        return False

    def _json(self, status: HTTPStatus, value: object) -> None:
        self._send(status, json.dumps(value, ensure_ascii=False).encode(), "application/json")

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, attachment: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # votes change with every click: never show a stale page or state
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if attachment:
            self.send_header("Content-Disposition", f'attachment; filename="{attachment}"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: a line per click would bury the URL; refusals reach the page instead."""
