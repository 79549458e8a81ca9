"""One kind of user error for every lab, and one way to show it.

A lab raises `UserError` (or a subclass) with a sentence the user can act on. The UI shows it with
`ui_error()`, the API returns `api_error()`'s `{"error": "..."}`; anything else that goes wrong is
turned into one line, never a traceback, and the server keeps serving."""
from __future__ import annotations

import functools
import logging

log = logging.getLogger("genai_lab")


class UserError(Exception):
    """A mistake in what the user gave, or a limit of this machine; the message is shown as is."""


def message(exc: BaseException, doing: str = "That") -> str:
    """The one line a user sees for `exc`: its own text for a UserError, else what failed and why."""
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{doing} failed: {type(exc).__name__}{': ' + text if text else ''}"


def api_error(exc: BaseException, doing: str = "That") -> dict:
    """The API's answer to a failed request."""
    if not isinstance(exc, UserError):
        log.exception("%s failed", doing, exc_info=exc)
    return {"error": message(exc, doing)}


def api(doing: str):
    """Decorator for an API function: UserError and any other exception become {"error": ...}."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001  the caller gets one line; the server keeps serving
                return api_error(exc, doing)
        return inner
    return wrap


def ui_error(exc: BaseException, doing: str = "That"):
    """A gr.Error to raise from a UI handler (gradio shows it as a toast and re-enables the controls)."""
    import gradio as gr

    if not isinstance(exc, UserError):
        log.exception("%s failed", doing, exc_info=exc)
    return gr.Error(message(exc, doing), print_exception=False)
