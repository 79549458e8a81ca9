"""launch(demo): the one way every lab starts, locally, in tests and on a Space.

Safe defaults: analytics off (shared.bootstrap), 127.0.0.1 locally and 0.0.0.0 on a Space,
an upload size limit, a bounded queue, cached files cleaned up after a day, and the common look."""
import argparse
import os

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


def launch(demo, argv=None, **overrides):
    """Prepare and launch `demo`; `overrides` go to gr.Blocks.launch (tests pass
    prevent_thread_lock=True)."""
    from shared.hubguard import mark_public

    prepare(demo)
    kwargs = launch_kwargs(parse_args(argv))
    kwargs.update(overrides)
    mark_public(kwargs["server_name"])  # strangers on the network: registry models only, no local folders
    return demo.launch(**kwargs)
