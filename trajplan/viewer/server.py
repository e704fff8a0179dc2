"""The viewer's local HTTP server: 127.0.0.1 only, one random token, plan-folder files and a JSON API.

Every request must carry the session token: the page's address has it as ``?token=``,
and the page answer sets it as a cookie (``SameSite=Strict``, ``HttpOnly``) that the page's
own requests then send; API clients may send the ``X-Trajplan-Token`` header instead.
The ``Host`` header must name the loopback address (no DNS rebinding). Files are served
only from the plan folder and the packaged static folder, never through ``..``, an
absolute path or a symbolic link that leads out.

Routes: ``GET /`` the page, ``GET /static/NAME``, ``GET /files/PATH`` (a file of the plan
folder), ``GET /api/plan``, ``GET /api/ct`` (the CT region as the page reads it: uncompressed
NIfTI of 16-bit integers), ``GET /api/surfaces`` (the label surfaces of the 3D view),
``POST /api/evaluate`` (one needle), ``POST /api/oblique`` (one needle and
``"view": {"opacity", "hidden"}``: its oblique plane as a PNG in JSON) and ``POST /api/save``
(``{"needles": [...]}``).
"""

from __future__ import annotations

import json
import logging
import secrets
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from trajplan.errors import InputError, OutputError
from trajplan.viewer.session import NeedleSpec, ViewerSession

log = logging.getLogger("trajplan")

STATIC_DIR = Path(__file__).resolve().parent / "static"
HOST = "127.0.0.1"
TOKEN_HEADER = "X-Trajplan-Token"
MAX_BODY_BYTES = 1 << 20
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json", ".csv": "text/csv",
                 ".png": "image/png", ".txt": "text/plain; charset=utf-8"}
CSP = ("default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' data: blob:; "
       "font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def inside(root: Path, relative: str) -> Path | None:
    """The regular file ``relative`` (URL-quoted, ``/``-separated) under ``root``, or None.

    Refused (None): empty, absolute, ``.`` or ``..`` parts, backslashes, NUL, and any path
    whose real location (symbolic links followed) is not inside ``root``'s.
    """
    relative = unquote(relative)
    parts = relative.split("/")
    if not relative or "\\" in relative or "\x00" in relative or any(p in ("", ".", "..") for p in parts):
        return None
    real_root = root.resolve()
    target = real_root.joinpath(*parts).resolve()
    return target if target.is_relative_to(real_root) and target.is_file() else None


class ViewerServer(ThreadingHTTPServer):
    """A threading HTTP server bound to 127.0.0.1 that serves one :class:`ViewerSession`."""

    daemon_threads = True

    def __init__(self, session: ViewerSession, port: int = 0, token: str | None = None) -> None:
        self.session = session
        self.token = token or secrets.token_urlsafe(32)
        super().__init__((HOST, port), _Handler)

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one the system chose for 0)."""
        return int(self.server_address[1])

    @property
    def cookie_name(self) -> str:
        """The token cookie's name; cookies ignore ports, so the port is in the name."""
        return f"trajplan_token_{self.port}"

    @property
    def url(self) -> str:
        """The page's address, token included."""
        return f"http://{HOST}:{self.port}/?token={self.token}"


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    # ------------------------------------------------------------------ dispatch
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self._route()
        if path is None:
            return
        if path == "/":
            self._send_file(STATIC_DIR / "index.html", set_cookie=True)
        elif path.startswith("/static/"):
            self._send_file(inside(STATIC_DIR, path[len("/static/"):]))
        elif path.startswith("/files/"):
            self._send_file(inside(self.server.session.plan_dir, path[len("/files/"):]))
        elif path == "/api/plan":
            self._send_json(self.server.session.view())
        elif path == "/api/ct":
            try:
                nifti = self.server.session.region_nifti()
            except InputError as exc:
                self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
                return
            if nifti is None:
                self._send_error(HTTPStatus.NOT_FOUND, "no CT region in this plan folder")
            else:
                self._send(HTTPStatus.OK, nifti, "application/octet-stream")
        elif path == "/api/surfaces":
            self._send_json(self.server.session.surfaces())
        else:
            self._send_error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        path = self._route()
        if path is None:
            return
        try:
            body = self._read_json()
            if path == "/api/evaluate":
                self._send_json(self.server.session.evaluate(NeedleSpec.from_json(body)))
            elif path == "/api/oblique":
                options = body.get("view", {}) if isinstance(body, dict) else {}
                opacity, hidden = options.get("opacity", 0.35), options.get("hidden", [])
                if (not isinstance(opacity, (int, float)) or isinstance(opacity, bool) or not 0 <= opacity <= 1
                        or not isinstance(hidden, list) or not all(isinstance(v, int) for v in hidden)):
                    raise InputError("view must be {\"opacity\": 0..1, \"hidden\": [label values]}")
                self._send_json(self.server.session.oblique(NeedleSpec.from_json(body), opacity=float(opacity),
                                                            hidden=tuple(hidden)))
            elif path == "/api/save":
                needles = body.get("needles") if isinstance(body, dict) else None
                if not isinstance(needles, list):
                    raise InputError("expected {\"needles\": [...]}")
                written = self.server.session.save([NeedleSpec.from_json(n) for n in needles])
                self._send_json({"written": sorted(p.name for p in written.values()),
                                 "needles": self.server.session.needles()})
            else:
                self._send_error(HTTPStatus.NOT_FOUND, "not found")
        except InputError as exc:
            self._send_error(HTTPStatus.BAD_REQUEST, str(exc))
        except OutputError as exc:
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))

    # ------------------------------------------------------------------ checks
    def _route(self) -> str | None:
        """The request's path once its host and token are accepted; else None after a 403."""
        url = urlsplit(self.path)
        allowed_hosts = {f"{HOST}:{self.server.port}", f"localhost:{self.server.port}"}
        if self.headers.get("Host", "") not in allowed_hosts:
            self._send_error(HTTPStatus.FORBIDDEN, "wrong host")
            return None
        offered = [self.headers.get(TOKEN_HEADER, "")]
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if self.server.cookie_name in cookie:
            offered.append(cookie[self.server.cookie_name].value)
        if url.path == "/":
            offered += parse_qs(url.query).get("token", [])
        if not any(secrets.compare_digest(t.encode(), self.server.token.encode()) for t in offered if t):
            self._send_error(HTTPStatus.FORBIDDEN, "missing or wrong token")
            return None
        return url.path

    def _read_json(self) -> object:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise InputError("bad Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise InputError("request body too large")
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError as exc:
            raise InputError(f"request body is not JSON ({exc})") from None

    # ------------------------------------------------------------------ answers
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, data: object) -> None:
        self._send(HTTPStatus.OK, json.dumps(data, allow_nan=False).encode(), "application/json")

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        """Answer an error and close the connection (a refused request's body is left unread)."""
        self.close_connection = True
        self._send(status, json.dumps({"error": message}).encode(), "application/json", {"Connection": "close"})

    def _send_file(self, path: Path | None, *, set_cookie: bool = False) -> None:
        if path is None:
            self._send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        extra = {}
        if set_cookie:
            extra["Set-Cookie"] = (f"{self.server.cookie_name}={self.server.token}; Path=/; HttpOnly; "
                                   "SameSite=Strict")
        kind = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        self._send(HTTPStatus.OK, path.read_bytes(), kind, extra)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log method, path (never the query, which may hold the token) and status at debug level."""
        log.debug("viewer: %s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        log.debug("viewer: " + format, *args)


def run(plan_dir: str | Path, *, port: int = 0, open_browser: bool = True, ct_path: str | Path | None = None,
        series_uid: str | None = None) -> dict:
    """Load ``plan_dir`` (and the plan's whole CT, if given), serve it on 127.0.0.1 until Ctrl-C,
    print the address first.

    Returns
    -------
    dict
        ``{"plan_dir": plan_dir, "url": the address without the token}`` once stopped.

    Raises
    ------
    InputError
        If ``plan_dir`` is not a plan folder, ``ct_path`` not its CT, or the port cannot be bound.
    """
    import webbrowser

    session = ViewerSession(plan_dir, ct_path, series_uid=series_uid)
    try:
        server = ViewerServer(session, port)
    except OSError as exc:
        session.close()
        raise InputError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc})") from None
    try:
        print(f"trajplan view: serving {session.plan_dir} at {server.url}", flush=True)
        print("trajplan view: press Ctrl-C to stop", flush=True)
        if open_browser:
            webbrowser.open(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        print("trajplan view: stopped", flush=True)
    finally:
        server.server_close()
        session.close()
    return {"plan_dir": str(session.plan_dir), "url": f"http://{HOST}:{server.port}/"}
