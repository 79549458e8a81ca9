"""Serve every lab from one process, for a workshop on one machine without internet.

    python scripts/serve_all.py                       # http://127.0.0.1:7860/ (index), /<lab>/ each lab
    python scripts/serve_all.py --host 0.0.0.0 --port 8000 --labs rag_chat,ner_tagger

Bound to an address other machines can reach (0.0.0.0, a LAN address), it serves strangers, so the
policy of a hosted Space applies (shared/hubguard.py): only the registry's models, no local folders,
unless GENAI_LAB_ALLOW_ANY_MODEL=1 (or GENAI_LAB_ALLOWED_MODELS=org/a,org/b) is set.

One FastAPI app: an index page at / linking every lab with what it teaches (from each lab's
README front matter), and each lab's Gradio app mounted at /<lab>/ with the common theme.
Labs are found by scripts/labkit.py (spaces/<name>/ with app.py and README.md), so a new lab
appears here by itself. Models load lazily inside the labs, so the index is up in seconds;
a lab that fails to import is listed with its error and the others still serve."""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
import traceback
from pathlib import Path

import labkit

ROOT = labkit.ROOT
import shared.bootstrap  # noqa: F401  (quiet defaults before gradio is imported)


def load_labs(names: list[str] | None = None, root: Path = ROOT) -> tuple[list[dict], list[labkit.Lab]]:
    """Import each lab's app.py; returns (mounted entries, all labs found)."""
    labs = labkit.discover(root)
    if names:
        unknown = sorted(set(names) - {lab.name for lab in labs})
        if unknown:
            raise labkit.LabError(f"Unknown lab(s): {', '.join(unknown)}. Labs here: "
                                  f"{', '.join(lab.name for lab in labs) or '(none)'}.")
        labs = [lab for lab in labs if lab.name in names]
    entries = []
    for lab in labs:
        start = time.perf_counter()
        entry = {"lab": lab, "demo": None, "error": "", "seconds": 0.0}
        try:
            module = labkit.import_app(lab, root)
            demo = getattr(module, "demo", None)
            if demo is None:
                raise labkit.LabError("app.py defines no module-level `demo` (demo = build_demo()).")
            entry["demo"] = demo
        except SystemExit as exc:  # shared.bootstrap.require() exits when a package is missing
            entry["error"] = f"missing packages (exit {exc.code}); run bash scripts/setup.sh"
        except Exception as exc:  # noqa: BLE001  one broken lab must not take the workshop down
            entry["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        entry["seconds"] = time.perf_counter() - start
        entries.append(entry)
        status = f"error: {entry['error']}" if entry["error"] else "ok"
        print(f"[serve_all] {lab.name}: {status} ({entry['seconds']:.1f} s)", flush=True)
    return entries, labs


def index_html(entries: list[dict]) -> str:
    cards = []
    for e in entries:
        lab = e["lab"]
        desc = html.escape(lab.short_description)
        teaches = html.escape(lab.teaches) if lab.teaches != lab.short_description else ""
        if e["error"]:
            link = f'<span class="title">{html.escape(lab.emoji)} {html.escape(lab.title)}</span>'
            extra = f'<p class="err">Not available: {html.escape(e["error"][:300])}</p>'
        else:
            link = (f'<a class="title" href="/{lab.name}/">{html.escape(lab.emoji)} '
                    f'{html.escape(lab.title)}</a>')
            extra = ""
        cards.append(f'<li class="card">{link}<p class="desc">{desc}</p>{f"<p>{teaches}</p>" if teaches else ""}{extra}'
                     f'<code>spaces/{lab.name}</code></li>')
    body = "\n".join(cards) or "<li class='card'>No labs found under spaces/ yet.</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>GenAI Lab Playground: all labs</title>
<style>
 body {{font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; background: #f8fafc;
        color: #1e293b}}
 header {{padding: 2rem 1.5rem 1rem; max-width: 70rem; margin: auto}}
 .brand {{font-size: .8rem; letter-spacing: .06em; text-transform: uppercase; color: #4f46e5}}
 h1 {{margin: .2rem 0 .4rem}} header p {{color: #475569; margin: 0}}
 ul {{list-style: none; padding: 0 1.5rem 2rem; max-width: 70rem; margin: auto; display: grid;
      grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem}}
 .card {{background: white; border: 1px solid #e2e8f0; border-radius: .75rem; padding: 1rem 1.2rem}}
 .title {{font-size: 1.2rem; font-weight: 600; color: #4338ca; text-decoration: none}}
 a.title:hover {{text-decoration: underline}}
 .desc {{font-weight: 500; color: #334155}} .card p {{margin: .5rem 0; line-height: 1.4}}
 .err {{color: #b91c1c}} code {{font-size: .8rem; color: #64748b}}
</style></head>
<body><header><div class="brand">GenAI Lab Playground</div><h1>All labs</h1>
<p>Every lab runs here on its offline default model; models load on first use, so the first
click in a lab can take a few seconds.</p></header>
<ul>
{body}
</ul></body></html>"""


# A small "back to the index" link on every lab page (plain DOM, no network).
NAV_HEAD = """<script>
(() => {
  const add = () => {
    if (!document.body || document.querySelector(".all-labs-link")) return;
    const a = document.createElement("a");
    a.href = "/"; a.textContent = "\u2190 All labs"; a.className = "all-labs-link";
    document.body.appendChild(a);
  };
  // Gradio may inject this after the page has loaded: add the link now, or once the body exists.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", add); else add();
})();
</script>"""
NAV_CSS = """
.all-labs-link {position: fixed; top: .6rem; left: .8rem; z-index: 1000; font-size: .85rem; padding: .2rem .6rem;
  border-radius: 999px; background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  color: var(--color-accent); text-decoration: none}
.all-labs-link:hover {text-decoration: underline}
"""


def create_app(names: list[str] | None = None, root: Path = ROOT):
    """The FastAPI app with the index at / and each importable lab at /<lab>/."""
    entries, _ = load_labs(names, root)  # first: an unknown name fails before gradio is imported
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

    from shared.launch import MAX_FILE_SIZE, mount_json_api, prepare
    from shared.look import CSS, THEME

    app = FastAPI(title="GenAI Lab Playground", docs_url=None, redoc_url=None, openapi_url=None)
    page = index_html(entries)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/healthz")
    def health():
        return JSONResponse({e["lab"].name: ("ok" if not e["error"] else e["error"]) for e in entries})

    for e in entries:
        if e["demo"] is None:
            continue
        name = e["lab"].name

        def bare(name=name):  # /<lab> -> /<lab>/ so relative asset paths resolve
            return RedirectResponse(f"/{name}/")

        app.add_api_route(f"/{name}", bare, include_in_schema=False)
        prepare(e["demo"])
        mount_json_api(app, e["demo"], prefix=f"/{name}")  # before the mount at /{name}, which would answer first
        gr.mount_gradio_app(app, e["demo"], path=f"/{name}", theme=THEME, css=CSS + NAV_CSS, head=NAV_HEAD, max_file_size=MAX_FILE_SIZE,
                            show_error=True, ssr_mode=False)
    app.state.entries = entries
    return app


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Serve every lab from one process (index at /).")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 to share with the room over the LAN)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--labs", help="comma-separated subset of labs (default: all)")
    args = parser.parse_args(argv)
    from shared.hubguard import ALLOW_ANY_VAR, is_loopback, mark_public

    if not is_loopback(args.host):  # strangers on the network: the policy of a public server (shared.hubguard)
        mark_public(args.host)
        print(f"[serve_all] serving beyond this machine ({args.host}): visitors may load only the registry's models "
              f"and no local folders; set {ALLOW_ANY_VAR}=1 to allow any Hub id.", flush=True)
    started = time.perf_counter()
    try:
        app = create_app([n.strip() for n in args.labs.split(",") if n.strip()] if args.labs else None)
    except labkit.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    ok = [e["lab"].name for e in app.state.entries if not e["error"]]
    print(f"[serve_all] {len(ok)} lab(s) ready in {time.perf_counter() - started:.1f} s: "
          f"http://{args.host}:{args.port}/  ({', '.join(f'/{n}/' for n in ok)})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
