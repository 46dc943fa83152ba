"""Serves the static web UI (web-ui/) at `/`, with cache validators and a strict CSP."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from scanstation.web.errors import Handler

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}


def find_web_ui() -> Path | None:
    """The web-ui folder: $WEB_UI_DIR, the package's copy (wheel), or the repo's."""
    override = os.environ.get("WEB_UI_DIR")
    candidates = [Path(override)] if override else []
    here = Path(__file__).resolve()
    candidates += [
        here.parents[1] / "web-ui",  # scanstation/web-ui, when a wheel ships it as package data
        here.parents[3] / "web-ui",  # <repo>/web-ui, for an editable install or a checkout
    ]
    for candidate in candidates:
        if (candidate / "index.html").is_file():
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the UI, read at start-up (the whole UI is a few tens of kilobytes)."""

    body: bytes
    content_type: str
    etag: str
    """Quoted SHA-256 prefix of the body, for If-None-Match revalidation."""


def load_files(root: Path) -> dict[str, StaticFile]:
    files: dict[str, StaticFile] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in CONTENT_TYPES:
            continue
        body = path.read_bytes()
        url = "/" + path.relative_to(root).as_posix()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        files[url] = StaticFile(body, CONTENT_TYPES[path.suffix], etag)
    return files


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every response, API errors included, carries the CSP and anti-framing headers."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class WebUi:
    """The routes of the UI pages: `/` (the app), `/login`, `/api` (the API reference), and
    everything under `/assets/`."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.files = load_files(root) if root else {}

    def _serve(self, request: web.Request, url: str) -> web.Response:
        if self.root is not None and os.environ.get("WEB_UI_RELOAD"):
            self.files = load_files(self.root)  # for UI development: edits show on reload
        static = self.files.get(url)
        if static is None:
            if not self.files:
                return web.Response(
                    status=404,
                    text="The web UI files (web-ui/) were not found; set WEB_UI_DIR "
                    "to their folder. The API works without them.",
                )
            raise web.HTTPNotFound()
        # no-cache: the browser revalidates each time (cheap 304s), so an upgrade of the
        # daemon never leaves a stale mix of old and new modules (there is no build step to
        # put hashes in the file names).
        headers = {"ETag": static.etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == static.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=static.body, headers={**headers, "Content-Type": static.content_type}
        )

    async def index(self, request: web.Request) -> web.Response:
        return self._serve(request, "/index.html")

    async def login_page(self, request: web.Request) -> web.Response:
        return self._serve(request, "/login.html")

    async def api_reference(self, request: web.Request) -> web.Response:
        """The readable API reference: renders /scanner/api/v1/openapi.json in the browser."""
        return self._serve(request, "/api.html")

    async def asset(self, request: web.Request) -> web.Response:
        return self._serve(request, "/assets/" + request.match_info["path"])

    async def favicon(self, request: web.Request) -> web.Response:
        return self._serve(request, "/assets/login/icon.svg")


def setup_ui(app: web.Application, root: Path | None = None) -> WebUi:
    ui = WebUi(root if root is not None else find_web_ui())
    app.router.add_get("/", ui.index)
    app.router.add_get("/login", ui.login_page)
    app.router.add_get("/api", ui.api_reference)
    app.router.add_get("/assets/{path:.+}", ui.asset)
    app.router.add_get("/favicon.ico", ui.favicon)
    return ui
