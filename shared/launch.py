"""launch(demo): the one way every lab starts, locally, in tests and on a Space.

Safe defaults: analytics off (shared.bootstrap), 127.0.0.1 locally and 0.0.0.0 on a Space,
an upload size limit, a bounded queue, cached files cleaned up after a day, and the common look."""
import argparse
import os
import sys
import weakref

MAX_FILE_SIZE = "50mb"
QUEUE_MAX_SIZE = 64  # waiting requests per lab; more get a "queue full" message, not a hang
CONCURRENCY = 2  # events of one kind running at once (gradio's default is 1)
CACHE_CLEANUP = (3600, 86_400)  # check hourly; remove gradio's cached files older than a day


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Launch a GenAI Lab Playground lab.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME")
                        or ("0.0.0.0" if on_space() else "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 to share on your LAN)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 0)) or None,
                        help="port (default: 7860, or the next free one)")
    return parser.parse_args(argv)


def launch_kwargs(args: argparse.Namespace) -> dict:
    from shared.look import CSS, THEME

    return dict(server_name=args.host, server_port=args.port, max_file_size=MAX_FILE_SIZE,
                theme=THEME, css=CSS, show_error=True)


def prepare(demo):
    """What every lab's server shares, launched alone or mounted by scripts/serve_all.py: a bounded queue,
    and gradio's copies of uploaded and served files removed once a day old (a Space runs for weeks)."""
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    if demo.delete_cache is None:  # gradio reads it when the app is created, at launch or mount
        demo.delete_cache = CACHE_CLEANUP
    return demo


# ------------------------------------------------------------------ plain JSON routes
MAX_JSON_BODY = 1_000_000  # bytes; an argument object larger than this is refused (413), not read
JSON_CONCURRENCY = 8  # calls of one JSON route running at once; the others wait for a thread
_JSON_APIS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def json_api(demo, **fns):
    """Also serve each of `fns` as `POST /api/<name>`: a JSON object of its arguments in (Content-Type:
    application/json), its dict out (HTTP 400 when the dict is {"error": ...}). One plain HTTP round trip,
    without gradio's queue and event stream: for scripts and for many clients at once. The gradio endpoints of
    the same functions stay as they are. Like gradio's own API, these routes are open to whoever reaches the
    server (gradio's `auth` does not cover them): serve only what any visitor may call."""
    _JSON_APIS.setdefault(demo, {}).update(fns)
    return demo


def mount_json_api(app, demo, prefix: str = "") -> list[str]:
    """Add `demo`'s json_api routes to the FastAPI `app` under `prefix` (scripts/serve_all.py: "/<lab>"; it
    must come before the gradio mount at that prefix, which would answer first)."""
    paths = []
    for name, fn in _JSON_APIS.get(demo, {}).items():
        path = f"{prefix}/api/{name}"
        app.add_api_route(path, _json_route(fn, path), methods=["POST"], include_in_schema=False)
        paths.append(path)
    return paths


def _json_route(fn, path: str, concurrency: int = JSON_CONCURRENCY):
    import functools
    import inspect
    import json

    import anyio
    from fastapi import Request
    from fastapi.responses import JSONResponse

    signature = inspect.signature(fn)
    limiter = anyio.CapacityLimiter(concurrency)  # its own threads: a flood of one route cannot starve the others

    def refuse(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def route(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":  # also what keeps a web page from posting here without a CORS preflight
            return refuse(f"{path} takes Content-Type: application/json (got {kind or 'none'}).", 415)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_JSON_BODY:
            return refuse(f"The request is {int(declared):,} bytes; {path} takes at most {MAX_JSON_BODY:,}.", 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BODY:
                return refuse(f"The request is over {MAX_JSON_BODY:,} bytes, the most {path} takes.", 413)
        try:
            args = json.loads(bytes(body) or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return refuse(f"{path} takes a JSON object of arguments, e.g. "
                          f"{json.dumps({k: '...' for k in signature.parameters})}; this body is not JSON.")
        if not isinstance(args, dict):
            return refuse(f"{path} takes a JSON object of arguments, not a {type(args).__name__}.")
        try:
            signature.bind(**args)
        except TypeError as exc:
            return refuse(f"{path}: {exc} (its arguments: {', '.join(signature.parameters) or 'none'}).")
        result = await anyio.to_thread.run_sync(functools.partial(fn, **args), limiter=limiter)
        bad = isinstance(result, dict) and "error" in result
        return JSONResponse(result, status_code=400 if bad else 200)

    return route


def launch(demo, argv=None, **overrides):
    """Prepare and launch `demo`, with its json_api routes; `overrides` go to gr.Blocks.launch (tests pass
    prevent_thread_lock=True)."""
    from shared.hubguard import mark_public

    prepare(demo)
    kwargs = launch_kwargs(parse_args(argv))
    kwargs.update(overrides)
    mark_public(kwargs["server_name"])  # strangers on the network: registry models only, no local folders
    block = not kwargs.pop("prevent_thread_lock", False)
    result = demo.launch(prevent_thread_lock=True, **kwargs)
    if _JSON_APIS.get(demo):
        mount_json_api(demo.server_app, demo)  # routes are looked up per request: added now, they answer now
    if block and not getattr(sys, "ps1", sys.flags.interactive):  # as gradio: `python -i` keeps its prompt
        demo.block_thread()
    return result
