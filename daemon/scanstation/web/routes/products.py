"""The local product catalog: search, read, edit, import."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from scanstation.bus import EventKind
from scanstation.payloads import product_json
from scanstation.services.catalog import CatalogError, gtin14, parse_products
from scanstation.store import NotFound, audit, review
from scanstation.web.context import API_BASE, services
from scanstation.web.errors import ApiError, read_body
from scanstation.web.models import ImportResult, ProductBody, ProductOut, ProductPage, ProductQuery
from scanstation.web.openapi import operation
from scanstation.web.params import body, page_json, query
from scanstation.web.permissions import principal

routes = web.RouteTableDef()


def _gtin_param(request: web.Request) -> str:
    try:
        return gtin14(request.match_info["gtin"])
    except CatalogError as exc:
        raise ApiError(422, str(exc), field="gtin") from None


@routes.get(API_BASE + "/products")
@operation("Search the catalog", query=ProductQuery, responses={200: ProductPage})
async def list_products(request: web.Request) -> web.Response:
    q = query(request, ProductQuery)
    products, total = await review.search_products(
        services(request).store,
        query=q.q[:100],
        max_completeness=q.max_completeness,
        order=q.order,
        limit=q.limit,
        offset=q.offset,
    )
    return page_json(request, [product_json(p) for p in products], total, q.limit, q.offset)


@routes.get(API_BASE + "/products/{gtin}")
@operation("One product", path={"gtin": "gtin"}, responses={200: ProductOut}, errors=(422,))
async def get_product(request: web.Request) -> web.Response:
    product = await services(request).store.get_product(_gtin_param(request))
    return web.json_response(product_json(product))


@routes.put(API_BASE + "/products/{gtin}")
@operation(
    "Create or update one product",
    path={"gtin": "gtin"},
    body=ProductBody,
    responses={200: ProductOut, 201: ProductOut},
)
async def put_product(request: web.Request) -> web.Response:
    """Create or update one product; fields left out keep their stored values."""
    svc = services(request)
    gtin = _gtin_param(request)
    sent = await body(request, ProductBody)
    fields = sent.model_dump(exclude_unset=True, exclude_none=True)
    if "gtin" in fields:
        try:
            same = gtin14(fields.pop("gtin")) == gtin
        except CatalogError as exc:
            raise ApiError(422, str(exc), field="gtin") from None
        if not same:
            raise ApiError(422, f"the body's gtin differs from the path's {gtin}", field="gtin")
    try:
        await svc.store.get_product(gtin)
        created = False
    except NotFound:
        created = True
    await svc.store.upsert_products([{"gtin": gtin, **fields}])
    product = await svc.store.get_product(gtin)
    svc.bus.publish(EventKind.PRODUCT, product_json(product))
    return web.json_response(product_json(product), status=201 if created else 200)


@routes.post(API_BASE + "/products/import")
@operation(
    "Import a CSV or JSON catalog",
    content={
        "text/csv": {"type": "string"},
        "application/json": {"type": "array", "items": {"type": "object"}},
        "multipart/form-data": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        },
    },
    responses={200: ImportResult},
)
async def import_products(request: web.Request) -> web.Response:
    """A CSV or JSON catalog as the body (or as the ``file`` part of a multipart form)."""
    svc = services(request)
    content_type = request.content_type
    if content_type.startswith("multipart/"):
        text, filename = None, "upload"
        try:
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    filename = part.filename or "upload"
                    text = (await part.read()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "the catalog must be UTF-8 text", field="file") from None
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            # aiohttp's multipart reader reports a malformed body this way.
            raise ApiError(400, f"the multipart body is malformed: {exc}") from None
        if text is None:
            raise ApiError(422, "the form needs a file part with the catalog", field="file")
    elif content_type in ("text/csv", "application/json", "text/plain"):
        try:
            body = await read_body(
                request, services(request).config.http.max_upload_bytes, "catalog"
            )
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "the catalog must be UTF-8 text") from None
        filename = "upload.json" if content_type == "application/json" else "upload.csv"
    else:
        raise ApiError(415, f"send the catalog as text/csv or application/json, got {content_type}")
    try:
        products = parse_products(text, filename)
    except CatalogError as exc:
        raise ApiError(422, str(exc)) from None
    count = await svc.store.upsert_products(products)
    who = principal(request)
    await audit.record(
        svc.store,
        who.name if who else "",
        "catalog.import",
        target=filename,
        remote=request.remote or "",
        detail={"products": count},
    )
    svc.bus.publish(EventKind.CATALOG, {"imported": count})
    return web.json_response({"imported": count}, status=200)
