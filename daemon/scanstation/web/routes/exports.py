"""CSV exports of scan events and of the catalog."""

from __future__ import annotations

import io
from datetime import datetime

from aiohttp import web

from scanstation.services.exports import write_products_csv, write_scans_csv
from scanstation.web.context import API_BASE, services
from scanstation.web.models import TimeRange
from scanstation.web.openapi import operation
from scanstation.web.params import query, time_param

routes = web.RouteTableDef()


# ---- exports ------------------------------------------------------------------------------


def _csv_response(text: str, filename: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@routes.get(API_BASE + "/exports/scans.csv")
@operation("Scan events as CSV", query=TimeRange, responses={200: "text/csv"})
async def export_scans(request: web.Request) -> web.Response:
    query(request, TimeRange)
    out = io.StringIO()
    await write_scans_csv(
        services(request).store,
        out,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return _csv_response(out.getvalue(), f"scans-{stamp}.csv")


@routes.get(API_BASE + "/exports/products.csv")
@operation("The catalog as CSV", responses={200: "text/csv"})
async def export_products(request: web.Request) -> web.Response:
    out = io.StringIO()
    await write_products_csv(services(request).store, out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return _csv_response(out.getvalue(), f"products-{stamp}.csv")
