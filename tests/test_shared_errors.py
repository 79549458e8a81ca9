"""shared/errors.py: one user-error class, one message for the UI and the API."""
import gradio as gr

from shared.errors import UserError, api, api_error, message, ui_error
from shared.models import ModelUnavailable


def test_user_errors_are_shown_as_written_and_others_in_one_line():
    assert message(UserError("Type a prompt first.")) == "Type a prompt first."
    assert message(KeyError("x"), "Scoring") == "Scoring failed: KeyError: 'x'"
    assert message(RuntimeError("first line\nsecond line")) == "That failed: RuntimeError: first line"
    assert message(RuntimeError(""), "Export") == "Export failed: RuntimeError"
    assert isinstance(ModelUnavailable("gone"), UserError)  # every lab's error derives from the one class


def test_api_decorator_returns_an_error_dict_and_passes_results_through():
    @api("Tagging")
    def tag(text):
        if not text:
            raise UserError("The text is empty.")
        return {"ok": len(text)}

    assert tag("abc") == {"ok": 3}
    assert tag("") == {"error": "The text is empty."}
    assert tag(None) == {"error": "The text is empty."}
    assert api_error(ValueError("bad"), "Export") == {"error": "Export failed: ValueError: bad"}


def test_ui_error_is_a_gradio_error_without_a_traceback():
    err = ui_error(UserError("Pick a strategy."))
    assert isinstance(err, gr.Error) and err.message == "Pick a strategy." and err.print_exception is False
