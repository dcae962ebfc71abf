"""The stack's ceiling: Starlette answering a fixed Hasura session JSON on /hasura/auth, no JWT work.

Started by run.sh with the uvicorn flags `webhook serve` uses (httptools, uvloop, no access log,
no server header, no proxy headers), pinned to the same core as our service:

  taskset -c 1 .venv/bin/uvicorn bare:app --app-dir bench --http httptools --loop uvloop --workers 1 \
      --no-access-log --no-server-header --no-proxy-headers --log-level warning --host 127.0.0.1 --port 18081

GET answers at once; POST (Hasura's POST mode) reads the body first, as any POST hook must.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FIXED = {
    "X-Hasura-Role": "admin-user",
    "X-Hasura-User-Id": "00000000-0000-0000-0000-000000000000",
    "X-Hasura-Tenant-Id": "00000000-0000-0000-0000-000000000000",
    "Cache-Control": "max-age=300",
}


async def auth(request: Request) -> Response:
    if request.method == "POST":
        await request.body()
    return JSONResponse(FIXED)


app = Starlette(routes=[Route("/hasura/auth", auth, methods=["GET", "POST"])])
