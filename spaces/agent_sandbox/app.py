"""Agent sandbox: the Gradio UI. What it computes lives in agent_*.py and shared/sandbox.py.

Run it: python spaces/agent_sandbox/app.py   (or bash scripts/run_lab.sh agent_sandbox)"""
from shared.bootstrap import require

require("gradio", "smolagents")


import gradio as gr

import agent_models as models
import agent_runs as runs
import agent_views as views
from shared.errors import UserError, api_error, ui_error
from shared.launch import launch
from shared.look import lab_header, lab_title
from shared.sandbox import warm_up

SESSION_TTL = 4 * 3600
EXAMPLE_TOOL = '''@tool
def word_stats(text: str, top: int = 3) -> dict:
    """Counts the words of a text and returns the most frequent ones.

    Args:
        text: the text to analyse
        top: how many frequent words to return
    """
    import collections
    import re
    words = re.findall(r"[a-z']+", text.lower())
    return {"words": len(words), "top": collections.Counter(words).most_common(top)}
'''
ATTACKS = {
    "Ordinary Python": "import statistics, json\ndata = [3, 1, 4, 1, 5, 9, 2, 6]\n"
                       "print(statistics.mean(data), statistics.median(data))\njson.dumps({'max': max(data)})",
    "Import os and run a shell": "import os\nos.system('cat /etc/passwd')",
    "Dunder walk to object's subclasses": "().__class__.__bases__[0].__subclasses__()",
    "Generator frame to the interpreter's globals": "g = (x for x in [1])\ng.gi_frame.f_globals['__builtins__']",
    "Format string attribute walk": "'{0.__globals__}'.format(final_answer)",
    "Read the server's environment": "read_file('/proc/1/environ')",
    "Write outside the folder": "write_file('../../etc/cron.d/evil', '* * * * * root id')",
    "CPU bomb": "x = 0\nwhile True:\n    x += 1",
    "Memory bomb": "blob = 'x' * (10 ** 10)",
    "Output flood": "for i in range(10 ** 8):\n    print('flood', i)",
    "Sleep past the wall clock": "import time\ntime.sleep(60)",
}


def _session(s) -> runs.AgentSession:
    return s if isinstance(s, runs.AgentSession) else runs.AgentSession()


def _close(s) -> None:
    if isinstance(s, runs.AgentSession):
        s.close()


# ------------------------------------------------------------------------------ API (JSON in, JSON out)

def api_run_code(code, session):
    """code -> {"ok", "output", "error", "reason", "seconds"} in the caller's own sandbox."""
    session = _session(session)
    try:
        return session.run_code(code), session
    except UserError as exc:
        return {"ok": False, "output": "", "error": str(exc), "reason": "input"}, session
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "output": "", **api_error(exc, "Running the code")}, session


def api_run_task(task, agent, model, session):
    """task, agent ('code' | 'tool_calling'), model ('smollm2', 'hf:<id>', 'openai:<url>|<name>',
    'transformers:<id>') -> {"answer", "steps": [{"kind", "content", "tokens_in", "tokens_out", "seconds"}], "error"}."""
    session = _session(session)
    try:
        return runs.run_task_blocking(session, task, agent or "code", model or "smollm2"), session
    except UserError as exc:
        return {"answer": "", "steps": [], "error": str(exc)}, session
    except Exception as exc:  # noqa: BLE001
        return {"answer": "", "steps": [], **api_error(exc, "The run")}, session


def api_reset(session):
    """Clears the caller's memory, tools, variables and files."""
    session = _session(session)
    session.reset()
    return {"ok": True, "files": session.sandbox.files(), "tools": session.user_tools()}, session


# ------------------------------------------------------------------------------ the agent tab

def build_agent_tab(session: gr.State) -> dict:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            preset = gr.Dropdown([*runs.PRESETS, runs.CUSTOM], value=next(iter(runs.PRESETS)), label="Task preset")
            task = gr.Textbox(next(iter(runs.PRESETS.values())).task, label="Task", lines=4,
                              max_length=runs.MAX_TASK_CHARS + 1000)
            agent = gr.Radio([(v, k) for k, v in runs.AGENTS.items()], value="code", label="Agent")
            model = gr.Dropdown(models.CHOICES, value=models.HUMAN, label="Model")
            weak = gr.Markdown(f"⚠️ {models.WEAK_NOTE}", visible=False)
            with gr.Group(visible=False) as model_box:
                model_id = gr.Textbox(label="Model id / name", placeholder=models.DEFAULT_HF_MODEL)
                url = gr.Textbox(label="Endpoint base URL", placeholder="http://localhost:8000/v1")
                api_key = gr.Textbox(label="API key (if the server needs one)", type="password")
            with gr.Row():
                max_steps = gr.Slider(1, runs.MAX_STEPS_LIMIT, value=runs.MAX_STEPS, step=1, label="Max steps")
                remote = runs.remote_executors()
                executor = gr.Dropdown(["sandbox", *remote], value="sandbox", label="Code executor",
                                       interactive=bool(remote),
                                       info="E2B, Docker or Modal appear when configured on this server.")
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary")
                stop_btn = gr.Button("Stop", variant="stop")
                new_btn = gr.Button("New conversation")
        with gr.Column(scale=3, min_width=360):
            summary = gr.HTML(views.summary_html(None, "Agent"))
            with gr.Group(elem_classes="ag-waiting"):
                inbox = gr.Markdown(views.inbox_markdown(None))
                step = gr.Code(label="Your step as the model (Thought + <code> block, or Action: JSON)",
                               language="python", lines=7, interactive=True)
                send_btn = gr.Button("Send step", variant="primary", size="sm")
            timeline = gr.HTML(views.timeline_html([]))
            with gr.Row():
                replay_pos = gr.Slider(0, 1, value=0, step=1, label="Replay: show the timeline up to event…", scale=4)
                replay_btn = gr.Button("▶ Replay", scale=1, size="sm")
            with gr.Accordion("Exact system prompt and messages the model received", open=False):
                prompt = gr.Code(label="System prompt", language="markdown", lines=12, wrap_lines=True)
                messages = gr.JSON(label="Messages of the latest step")
    timer = gr.Timer(0.7, active=False)
    replay_timer = gr.Timer(0.6, active=False)
    wait_key = gr.State("")

    def on_preset(name):
        p = runs.PRESETS.get(name)
        return {task: p.task, agent: p.agent} if p else {task: gr.update()}

    preset.change(on_preset, preset, [task, agent], api_visibility="private")
    model.change(lambda m: {weak: gr.update(visible=m == models.EMBEDDED),
                            model_box: gr.update(visible=m in (models.HF_INFERENCE, models.ENDPOINT, models.LOCAL))},
                 model, [weak, model_box], api_visibility="private")

    def refresh(s, key, preset_name, agent_kind):
        s = _session(s)
        run = s.runs.get("main")
        active = run is not None and run.state in ("starting", "running", "waiting", "stopping")
        out = {summary: views.summary_html(run, runs.AGENTS.get(run.agent, "") if run else "Agent"),
               inbox: views.inbox_markdown(run), timeline: views.timeline_html(s.timeline),
               replay_pos: gr.update(maximum=max(1, len(s.timeline)), value=len(s.timeline)),
               timer: gr.Timer(active=active), wait_key: key, step: gr.update()}
        if run is not None:
            out[prompt] = run.system_prompt
            out[messages] = run.messages
            waiting = run.waiting
            new_key = f"{run.id}:{len(run.steps)}" if waiting else ""
            if waiting and new_key != key:
                out[step] = runs.suggestion(run, preset_name, agent_kind)
            out[wait_key] = new_key
        return out

    outs = [summary, inbox, timeline, replay_pos, timer, wait_key, step, prompt, messages]

    def start(s, task_text, agent_kind, model_choice, mid, u, key_, steps, ex, preset_name):
        s = _session(s)
        try:
            s.start_run("main", task_text, agent_kind, model_choice, mid, u, key_, int(steps), ex)
        except UserError as exc:
            raise ui_error(exc) from None
        return {session: s, **refresh(s, "", preset_name, agent_kind)}

    run_btn.click(start, [session, task, agent, model, model_id, url, api_key, max_steps, executor, preset],
                  [session, *outs], api_visibility="private", concurrency_limit=8)
    timer.tick(refresh, [session, wait_key, preset, agent], outs, api_visibility="private", show_progress="hidden")

    def send(s, text):
        s = _session(s)
        try:
            s.send_step("main", text)
        except UserError as exc:
            raise ui_error(exc) from None
        return {timer: gr.Timer(active=True), inbox: "*The agent is running your step in the sandbox…*"}

    send_btn.click(send, [session, step], [timer, inbox], api_visibility="private")

    def stop(s):
        _session(s).stop("main")
        return {timer: gr.Timer(active=True)}

    stop_btn.click(stop, session, [timer], api_visibility="private")

    def new_conversation(s, preset_name, agent_kind):
        s = _session(s)
        s.reset()
        gr.Info("New conversation: memory, tools, variables and files were cleared.")
        return {session: s, **refresh(s, "", preset_name, agent_kind), prompt: "", messages: [], step: ""}

    new_btn.click(new_conversation, [session, preset, agent], [session, *outs], api_visibility="private")

    replay_pos.release(lambda s, n: views.timeline_html(_session(s).timeline, int(n)), [session, replay_pos],
                       timeline, api_visibility="private")
    replay_btn.click(lambda: (0, gr.Timer(active=True)), None, [replay_pos, replay_timer], api_visibility="private")

    def replay_tick(s, n):
        s = _session(s)
        n = int(n) + 1
        return {replay_pos: gr.update(value=n, maximum=max(1, len(s.timeline))),
                timeline: views.timeline_html(s.timeline, n), replay_timer: gr.Timer(active=n < len(s.timeline))}

    replay_timer.tick(replay_tick, [session, replay_pos], [replay_pos, timeline, replay_timer],
                      api_visibility="private", show_progress="hidden")
    return {"task": task, "model": model, "model_id": model_id, "url": url, "api_key": api_key,
            "max_steps": max_steps, "timeline": timeline, "replay_pos": replay_pos, "refresh": refresh, "outs": outs, "wait_key": wait_key,
            "preset": preset, "agent": agent}


# ------------------------------------------------------------------------------ side by side

def build_compare_tab(session: gr.State, main: dict) -> None:
    gr.Markdown("The same task and model on a **CodeAgent** (actions are Python, run in your sandbox) and a "
                "**ToolCallingAgent** (one JSON tool call per step). Model and task come from the Agent tab. With "
                "*Be the model* you write the steps for both.")
    go = gr.Button("Run both on the Agent tab's task", variant="primary")
    cols = {}
    with gr.Row(equal_height=False):
        for slot, title in (("code", "CodeAgent"), ("tool_calling", "ToolCallingAgent")):
            with gr.Column(min_width=320):
                summ = gr.HTML(views.summary_html(None, title))
                box = gr.Code(label=f"Your step for the {title}", language="python", lines=5)
                send = gr.Button(f"Send step to the {title}", size="sm")
                tl = gr.HTML()
                cols[slot] = (summ, box, send, tl, title)
    timer = gr.Timer(0.8, active=False)
    keys = gr.State({})

    def refresh(s, k, preset_name):
        s = _session(s)
        out, active, k = {}, False, dict(k or {})
        for slot, (summ, box, _, tl, title) in cols.items():
            run = s.runs.get(slot)
            out[summ] = views.summary_html(run, title)
            out[tl] = views.timeline_html([e for e in s.timeline if run and e.get("run") == run.id])
            out[box] = gr.update()
            if run is not None:
                active = active or run.state in ("starting", "running", "waiting", "stopping")
                key = f"{run.id}:{len(run.steps)}" if run.waiting else ""
                if key and key != k.get(slot):
                    out[box] = runs.suggestion(run, preset_name, slot)
                k[slot] = key
        out[timer] = gr.Timer(active=active)
        out[keys] = k
        return out

    outs = [c[i] for c in cols.values() for i in (0, 1, 3)] + [timer, keys]

    def start(s, task, model, mid, u, key_, steps, preset_name):
        s = _session(s)
        try:
            for slot in cols:
                s.start_run(slot, task, slot, model, mid, u, key_, int(steps), keep_memory=False)
        except UserError as exc:
            raise ui_error(exc) from None
        return {session: s, **refresh(s, {}, preset_name)}

    go.click(start, [session, main["task"], main["model"], main["model_id"], main["url"], main["api_key"],
                     main["max_steps"], main["preset"]], [session, *outs], api_visibility="private")
    timer.tick(refresh, [session, keys, main["preset"]], outs, api_visibility="private", show_progress="hidden")
    for slot, (_, box, send, _, _) in cols.items():
        def send_step(s, text, slot=slot):
            try:
                _session(s).send_step(slot, text)
            except UserError as exc:
                raise ui_error(exc) from None
            return gr.Timer(active=True)

        send.click(send_step, [session, box], timer, api_visibility="private")


# ------------------------------------------------------------------------------ the sandbox tab

def build_sandbox_tab(session: gr.State, main: dict) -> None:
    gr.Markdown("Run Python in **your session's sandbox**: the same worker and executor the agents use "
                "(endpoint `/run_code`). Try to break out: every attempt and the layer that stopped it lands in "
                "the timeline.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            attack = gr.Dropdown(list(ATTACKS), value="Ordinary Python", label="Examples and escape attempts")
            code = gr.Code(ATTACKS["Ordinary Python"], language="python", lines=10, label="Code")
            run_btn = gr.Button("Run in the sandbox", variant="primary")
            result = gr.Markdown()
        with gr.Column(scale=2):
            files = gr.Dataframe(headers=["file", "bytes"], label="Your session folder", interactive=False)
            layers = gr.HTML()
    attack.change(lambda a: ATTACKS.get(a, ""), attack, code, api_visibility="private")

    def run(s, text):
        s = _session(s)
        out = s.run_code(text)
        if out["ok"]:
            md = f"✅ **ok** in {out['seconds']:.3f} s\n\n```text\n{out['output'][:6000] or '(no output)'}\n```"
        else:
            md = (f"🛑 **stopped: {out['reason']}** ({views.REASONS.get(out['reason'], '')})\n\n```text\n"
                  f"{out['error'][:3000]}\n```" + (f"\n\nPrinted before it stopped:\n```text\n{out['output'][:3000]}\n```"
                                                   if out["output"] else ""))
        return {session: s, result: md, files: [[f["name"], f["bytes"]] for f in s.sandbox.files()],
                layers: views.layers_html(s.sandbox.layers), main["timeline"]: views.timeline_html(s.timeline),
                main["replay_pos"]: gr.update(maximum=max(1, len(s.timeline)), value=len(s.timeline))}

    run_btn.click(run, [session, code], [session, result, files, layers, main["timeline"], main["replay_pos"]],
                  api_visibility="private",
                  concurrency_limit=8)


# ------------------------------------------------------------------------------ the tools tab

def build_tools_tab(session: gr.State) -> None:
    gr.Markdown("Write a tool as a Python function with `@tool`: type hints and a docstring with `Args:`. "
                "smolagents derives the schema from them (shown below) and the agents see the tool in their prompt. "
                "Its body runs **inside your sandbox**, like all code here; the next run can use it.")
    with gr.Row(equal_height=False):
        with gr.Column():
            source = gr.Code(EXAMPLE_TOOL, language="python", lines=14, label="Tool source")
            with gr.Row():
                add = gr.Button("Check and add the tool", variant="primary")
                remove_name = gr.Dropdown([], label="Your tools", allow_custom_value=False, scale=2)
                remove = gr.Button("Remove", size="sm", scale=1)
        with gr.Column():
            schema = gr.JSON(label="Schema smolagents derived")
            code_prompt = gr.Code(label="How a CodeAgent sees it (in its system prompt)", language="python")
            tc_prompt = gr.Code(label="How a ToolCallingAgent sees it", language="markdown")

    def add_tool(s, text):
        s = _session(s)
        try:
            info = s.define_tool(text)
        except UserError as exc:
            raise ui_error(exc) from None
        gr.Info(f"Tool '{info['schema']['name']}' added: the next run can call it.")
        return {session: s, schema: info["schema"], code_prompt: info["code_prompt"],
                tc_prompt: info["tool_calling_prompt"], remove_name: gr.update(choices=s.user_tools())}

    add.click(add_tool, [session, source], [session, schema, code_prompt, tc_prompt, remove_name],
              api_visibility="private")

    def remove_tool(s, name):
        s = _session(s)
        if name:
            s.forget_tool(name)
        return {session: s, remove_name: gr.update(choices=s.user_tools(), value=None)}

    remove.click(remove_tool, [session, remove_name], [session, remove_name], api_visibility="private")


# ------------------------------------------------------------------------------ the page

def build_demo() -> gr.Blocks:
    with gr.Blocks(title=lab_title(__file__)) as demo:
        gr.HTML(f"<style>{views.CSS}</style>")
        lab_header(__file__)
        session = gr.State(None, time_to_live=SESSION_TTL, delete_callback=_close)
        layers_line = gr.Markdown(elem_classes="model-status")
        with gr.Tabs():
            with gr.Tab("Agent", id="agent"):
                main = build_agent_tab(session)
            with gr.Tab("Side by side", id="compare"):
                build_compare_tab(session, main)
            with gr.Tab("Sandbox", id="sandbox"):
                build_sandbox_tab(session, main)
            with gr.Tab("Your tools", id="tools"):
                build_tools_tab(session)

        def on_load(s):
            s = _session(s)
            layers = s.sandbox.layers
            on = [k for k, v in layers.items() if v["active"]]
            off = [f"{k} ({v['detail']})" for k, v in layers.items() if not v["active"]]
            line = (f"**Sandbox layers active here:** {', '.join(on)}" + (f" · **off:** {'; '.join(off)}" if off else "")
                    + " · details in the Sandbox tab")
            return {session: s, layers_line: line}

        demo.load(on_load, session, [session, layers_line], api_visibility="private")

        with gr.Row(visible=False):
            api_code, api_task, api_agent, api_model = gr.Textbox(), gr.Textbox(), gr.Textbox(), gr.Textbox()
            api_out = gr.JSON()
            b1, b2, b3 = gr.Button(), gr.Button(), gr.Button()
        b1.click(api_run_code, [api_code, session], [api_out, session], api_name="run_code", concurrency_limit=16)
        b2.click(api_run_task, [api_task, api_agent, api_model, session], [api_out, session], api_name="run_task",
                 concurrency_limit=4)
        b3.click(api_reset, [session], [api_out, session], api_name="reset")
    warm_up()
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
