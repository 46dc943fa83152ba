"""Administration: the users and their roles, the audit log (JSON pages and CSV), the
configuration the daemon runs with, and the whole station as a backup file to download."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from scanstation.payloads import iso
from scanstation.services.backup import MIN_PASSPHRASE, BackupError, stage_restore, write_backup
from scanstation.services.exports import write_audit_csv
from scanstation.services.roles import Role
from scanstation.store import audit
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError, read_json
from scanstation.web.models import AuditQuery, TimeRange
from scanstation.web.openapi import operation
from scanstation.web.params import page_json, query, time_param
from scanstation.web.permissions import principal
from scanstation.web.ui_auth import UI_AUTH
from scanstation.web.users import FIRST_ADMIN, key_files

routes = web.RouteTableDef()


@routes.get(f"{API_BASE}/users")
@operation("Every user who can log in (admin)")
async def list_users(request: web.Request) -> web.Response:
    """Every user who can log in (never a password hash); the first admin first."""
    users = request.app[UI_AUTH].users
    items = [
        {"username": FIRST_ADMIN, "role": Role.ADMIN.value, "first_admin": True, "created": None}
    ]
    for user in sorted((users.all() if users else {}).values(), key=lambda u: u.name):
        items.append(
            {
                "username": user.name,
                "role": user.role.value,
                "first_admin": False,
                "created": iso(user.created),
            }
        )
    return web.json_response({"count": len(items), "results": items})


@routes.get(f"{API_BASE}/audit")
@operation("The audit log, newest first (admin)", query=AuditQuery)
async def list_audit(request: web.Request) -> web.Response:
    """The audit log, newest first; ?action=login (or a prefix such as user), since, until."""
    q = query(request, AuditQuery)
    limit, offset = q.limit, q.offset
    total, rows = await audit.entries(
        services(request).store,
        limit=limit,
        offset=offset,
        action=q.action or None,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )
    return page_json(request, [e.to_json() for e in rows], total, limit, offset)


@routes.get(f"{API_BASE}/audit.csv")
@operation("The audit log as CSV (admin)", query=TimeRange, responses={200: "text/csv"})
async def export_audit(request: web.Request) -> web.Response:
    out = io.StringIO()
    await write_audit_csv(
        services(request).store,
        out,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


@routes.get(f"{API_BASE}/config")
@operation("The running configuration as JSON (admin)")
async def current_config(request: web.Request) -> web.Response:
    """The configuration the daemon runs with, as JSON (secrets live in files it names)."""
    return web.json_response(services(request).config.model_dump(mode="json"))


async def _backup_response(request: web.Request, passphrase: str | None) -> web.StreamResponse:
    svc = services(request)
    config = svc.config
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    name = f"{config.device.id}-{stamp}.backup"
    # Written next to the data (not to a RAM-backed /tmp), sent, then deleted.
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".backup", dir=config.storage.path)
    os.close(fd)
    path = Path(tmp)
    try:
        manifest = await asyncio.to_thread(
            write_backup, config, svc.config_path, path, passphrase, key_files(config)
        )
        f = await asyncio.to_thread(_open_and_unlink, path)
    except BackupError as exc:
        raise ApiError(409, str(exc)) from None
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
    with f:
        who = principal(request)
        await audit.record(
            svc.store,
            who.name if who else "",
            "backup",
            target="download",
            remote=request.remote or "",
            detail={"files": len(manifest["files"]), "encrypted": passphrase is not None},
        )
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{name}"',
                "Content-Length": str(os.fstat(f.fileno()).st_size),
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(f.read, 1 << 20):
            await response.write(chunk)
        await response.write_eof()
        return response


def _open_and_unlink(path: Path) -> BinaryIO:
    """The open file, its name already gone (nothing is left behind if the client leaves)."""
    f = path.open("rb")
    path.unlink()
    return f


@routes.get(f"{API_BASE}/backup")
@operation(
    "The whole station as a backup file (admin)",
    responses={200: "application/octet-stream"},
    errors=(409,),
)
async def download_backup(request: web.Request) -> web.StreamResponse:
    """The whole station as one `scanstation backup` file (restore it with the CLI)."""
    if request.method == "HEAD":  # no backup is built just to measure it
        return web.Response(headers={"Content-Type": "application/octet-stream"})
    return await _backup_response(request, None)


@routes.post(f"{API_BASE}/backup")
@operation(
    "The whole station as a backup file sealed with a passphrase (admin)",
    content={
        "application/json": {
            "type": "object",
            "properties": {"passphrase": {"type": "string", "minLength": MIN_PASSPHRASE}},
            "required": ["passphrase"],
        }
    },
    responses={200: "application/octet-stream"},
    errors=(409,),
)
async def download_sealed_backup(request: web.Request) -> web.StreamResponse:
    """The same, sealed with ``{"passphrase": "…"}`` (at least 10 characters)."""
    body = await read_json(request)
    passphrase = body.get("passphrase") if isinstance(body, dict) else None
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise ApiError(
            422, f"passphrase must be text of at least {MIN_PASSPHRASE} characters",
            field="passphrase",
        )  # fmt: skip
    return await _backup_response(request, passphrase)


PASSPHRASE_HEADER = "X-Backup-Passphrase"  # noqa: S105 (a header name)


@routes.post(f"{API_BASE}/restore")
@operation(
    "Restore a backup file and restart in place (admin)",
    content={"application/octet-stream": {"type": "string", "format": "binary"}},
    errors=(409,),
)
async def restore_from_upload(request: web.Request) -> web.Response:
    """A backup file as the body (application/octet-stream; its passphrase, if sealed, in
    X-Backup-Passphrase): checked completely, then put in place while the daemon restarts.
    Everything on the station is replaced, keys and users included."""
    svc = services(request)
    if svc.restart is None:
        raise ApiError(409, "this daemon cannot restart itself; use `scanstation restore`")
    if request.content_type != "application/octet-stream":
        raise ApiError(415, f"send the backup file as application/octet-stream, got "
                       f"{request.content_type}")  # fmt: skip
    storage = svc.config.storage.path
    fd, tmp = await asyncio.to_thread(
        tempfile.mkstemp, prefix=".upload-", suffix=".backup", dir=storage
    )
    path = Path(tmp)
    try:
        floor = svc.config.storage.disk_floor_mb * 1024 * 1024
        with os.fdopen(fd, "wb") as out:
            while chunk := await request.content.read(1 << 20):
                await asyncio.to_thread(out.write, chunk)
                free = (await asyncio.to_thread(shutil.disk_usage, storage)).free
                if free < floor:  # an upload never eats the space captures need
                    raise ApiError(
                        503,
                        f"the upload would leave less than [storage] disk_floor_mb = "
                        f"{svc.config.storage.disk_floor_mb} MB free; free some space first",
                        code="disk_full",
                    )
        who = principal(request)
        name = who.name if who else ""
        try:
            manifest = await asyncio.to_thread(
                stage_restore, svc.config, path, request.headers.get(PASSPHRASE_HEADER), name
            )
        except BackupError as exc:
            raise ApiError(422, str(exc), field="file") from None
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
    asyncio.get_running_loop().call_later(0.5, svc.restart)
    return web.json_response(
        {
            "restoring": True,
            "device_id": manifest["device_id"],
            "made": manifest["created"],
            "files": len(manifest["files"]),
        }
    )
