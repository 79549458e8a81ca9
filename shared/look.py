"""The common look of the labs: one theme, a little CSS, and the header every lab starts with."""
import gradio as gr

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", neutral_hue="slate",
                       # System fonts only: a Google font would be fetched from the internet by every browser.
                       font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])

CSS = """
.lab-header {border-bottom: 1px solid var(--border-color-primary); padding-bottom: .5rem; margin-bottom: .25rem}
.lab-header h1 {margin: 0; font-size: 1.6rem}
.lab-header .teaches {color: var(--body-text-color-subdued); margin: .25rem 0 0}
.lab-header .brand {font-size: .8rem; letter-spacing: .06em; text-transform: uppercase; color: var(--color-accent)}
.model-status {font-size: .9rem}
footer {visibility: visible}
"""


def lab_title(app_file: str) -> str:
    """The lab's title from the README card beside `app_file` (for gr.Blocks(title=...))."""
    from shared.cards import title_and_teaches

    return title_and_teaches(app_file)[0]


def lab_header(app_file: str) -> gr.HTML:
    """The header of the lab whose app.py is `app_file`: title and "what it teaches" from its README card."""
    from shared.cards import title_and_teaches

    return header(*title_and_teaches(app_file))


def header(title: str, teaches: str) -> gr.HTML:
    """The lab's title and one sentence on what it teaches."""
    import html

    return gr.HTML(
        f'<div class="lab-header"><div class="brand">GenAI Lab Playground</div>'
        f"<h1>{html.escape(title)}</h1><p class='teaches'>{html.escape(teaches)}</p></div>"
    )
