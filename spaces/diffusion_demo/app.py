"""Diffusion demo: the Gradio UI. What it computes lives in diffusion_*.py.

Run it: python spaces/diffusion_demo/app.py   (or bash scripts/run_lab.sh diffusion_demo)"""
from shared.bootstrap import require

require("gradio", "torch", "diffusers", "sklearn")

import random
import time

import gradio as gr
import pandas as pd

import diffusion_logic as logic
import diffusion_views as views
from shared import jobs
from shared.errors import UserError, api, ui_error
from shared.launch import launch
from shared.look import lab_header, lab_title

JOB_KEY = "diffusion_sampling"  # one sampling at a time on this machine; the others wait in line
SCHEDULER_CHOICES = list(logic.SCHEDULERS)
MODEL_CHOICES = [spec.name for spec in logic.REGISTRY["diffusion"]]
POLL_S = 0.4


# ---------------------------------------------------------------- the API (JSON in, JSON out)

def _on_step(job):
    def report(i, total):
        job.report(i / total, f"step {i}/{total}")
        job.check_stop()
    return report


def _run_job(fn, label: str):
    """Run fn(job) in the sampling line and wait: the API shares the queue with the UI."""
    job = jobs.run_now(fn, key=JOB_KEY, kind="diffusion", label=label)
    if job.state == jobs.ERROR:
        raise UserError(job.error)
    if job.state != jobs.DONE:
        raise UserError("The request was stopped before it finished.")
    return job.result


@api("Generating")
def generate_api(prompt: str = "", scheduler: str = "", steps: int = logic.DEFAULT_STEPS,
                 guidance: float = logic.DEFAULT_GUIDANCE, seed: int = logic.DEFAULT_SEED, n: int = logic.DEFAULT_N,
                 model: str = "") -> dict:
    """n images for the prompt (image i uses seed + i). Returns {"model", "class", "images" (PNG data URIs,
    16x16 for the digits model), "seconds", "seeds", "understood", "scheduler", "steps", "guidance"}."""
    gen = _run_job(lambda job: logic.generate(prompt, scheduler, steps, guidance, seed, n, model=model,
                                              on_step=_on_step(job)), "Generating")
    return {"model": gen.model, "class": gen.parsed.label, "images": [views.data_uri(im) for im in gen.images],
            "seconds": round(gen.seconds, 4), "seeds": gen.seeds, "understood": gen.parsed.understood,
            "scheduler": gen.scheduler, "steps": gen.steps, "guidance": gen.guidance,
            "classifier_reads": gen.classified}


@api("The filmstrip")
def filmstrip_api(prompt: str = "", scheduler: str = "", steps: int = logic.DEFAULT_STEPS,
                  seed: int = logic.DEFAULT_SEED, at_steps: list[int] | None = None,
                  guidance: float = logic.DEFAULT_GUIDANCE, model: str = "") -> dict:
    """x_t and the predicted x_0 at the 1-based steps `at_steps` (empty: 8 spread out) for one seed.
    Returns {"model", "class", "frames": [{"step", "timestep", "x_t", "x0"}], "image", "seconds"}."""
    strip = _run_job(lambda job: logic.filmstrip(prompt, scheduler, steps, seed, at_steps, guidance, model=model,
                                                 on_step=_on_step(job)), "The filmstrip")
    gen = strip.generation
    return {"model": gen.model, "class": gen.parsed.label, "understood": gen.parsed.understood,
            "scheduler": gen.scheduler, "steps": gen.steps, "seed": gen.seed, "seconds": round(gen.seconds, 4),
            "frames": [{"step": f.step, "timestep": f.timestep, "x_t": views.data_uri(f.x_t[0]),
                        "x0": views.data_uri(f.x0[0])} for f in strip.frames],
            "image": views.data_uri(gen.images[0])}


@api("Listing schedulers")
def schedulers_api() -> dict:
    """The scheduler names /generate and /filmstrip accept; an empty `scheduler` means the default."""
    return {"schedulers": list(logic.SCHEDULERS), "default": logic.DEFAULT_SCHEDULER,
            "notes": dict(logic.SCHEDULER_NOTES)}


# ---------------------------------------------------------------- shared UI pieces

def settings_row(steps=True, guidance=True, n=False, scheduler=True) -> dict:
    """Scheduler, steps, guidance, seed (with a dice button) and n, as the tabs need them."""
    out = {}
    with gr.Row(equal_height=True):
        if scheduler:
            out["scheduler"] = gr.Dropdown(SCHEDULER_CHOICES, value=logic.DEFAULT_SCHEDULER, label="Scheduler",
                                           min_width=150)
        if steps:
            out["steps"] = gr.Slider(1, 200, value=logic.DEFAULT_STEPS, step=1, label="Steps", min_width=160,
                                     info=f"up to {logic.MAX_STEPS} through the API")
        if guidance:
            out["guidance"] = gr.Slider(0, 10, value=logic.DEFAULT_GUIDANCE, step=0.5, label="Guidance (CFG)",
                                        min_width=160, info="0 = unconditional, 1 = no guidance")
        if n:
            out["n"] = gr.Slider(1, 32, value=logic.DEFAULT_N, step=1, label="Images", min_width=140)
        with gr.Column(min_width=150):
            out["seed"] = gr.Number(value=logic.DEFAULT_SEED, precision=0, minimum=0, maximum=logic.MAX_SEED,
                                    label="Seed", info="image i uses seed + i")
            dice = gr.Button("🎲 New seed", size="sm")
    dice.click(lambda: random.randint(0, 999_999), None, out["seed"], api_visibility="private", queue=False)
    return out


def progress_line(info: dict, started: float) -> str:
    if info["state"] == jobs.QUEUED:
        return f"⏳ Waiting: number {info['position']} in line; starts by itself."
    return f"⏳ {info['message']} · {int(100 * info['progress'])}% · {time.time() - started:.1f} s"


def follow(job):
    """Yield progress lines while the job runs (the caller streams them), then return the job."""
    started = time.time()
    try:
        while not job.wait(POLL_S):
            yield progress_line(jobs.poll(job.id), started)
    except GeneratorExit:  # the page was closed: free the line
        jobs.stop(job.id)
        raise


def outcome(job, doing: str):
    """The job's result, or a gr.Error for a failed one; None when it was stopped."""
    if job.state == jobs.ERROR:
        raise gr.Error(job.error, print_exception=False)
    if job.state == jobs.STOPPED:
        return None
    return job.result


def run_buttons(label: str):
    with gr.Row():
        go = gr.Button(label, variant="primary", scale=3)
        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    job_id = gr.State("")
    stop.click(lambda jid: jobs.stop(jid) and None, job_id, None, api_visibility="private", queue=False)
    return go, stop, job_id


def gallery(label: str, columns: int, height=None, **kw):
    return gr.Gallery(label=label, columns=columns, height=height or "auto", format="png", object_fit="contain",
                      buttons=["download", "fullscreen"], **kw)


# ---------------------------------------------------------------- tabs

def build_generate_tab():
    with gr.Row():
        prompt = gr.Textbox(value="a handwritten 7", label="Prompt", scale=3,
                            info="a digit: 'a handwritten 7', 'seven', 'digit 7'; empty = unconditional")
        model = gr.Dropdown(MODEL_CHOICES, value=logic.EMBEDDED_NAME, label="Model", scale=2, allow_custom_value=True,
                            info="Hub models need the internet (and a GPU for the big ones)")
    s = settings_row(n=True)
    go, stop, job_id = run_buttons("Generate")
    status = gr.Markdown(logic.model_status())
    images = gallery("Generated images (click one to enlarge; download as PNG)", columns=8, height=260)
    latents = gallery("Latent view: the VAE's decoding of the predicted x_0 along the way (image 1)", columns=4,
                      visible=False)

    def start(prompt_v, model_v, sched, steps, guidance, seed, n):
        try:
            if not model_v or model_v == logic.EMBEDDED_NAME:  # check before queueing: a typo fails at once
                logic.check_scheduler(sched), logic.check_steps(steps), logic.check_guidance(guidance)
                logic.check_seed(seed), logic.check_n(n), logic.check_work(int(n), int(steps))
                logic.parse_prompt(prompt_v)
        except UserError as exc:
            raise ui_error(exc) from None
        job = jobs.submit(lambda j: logic.generate(prompt_v, sched, steps, guidance, seed, n, model=model_v,
                                                   on_step=_on_step(j)),
                          key=JOB_KEY, kind="diffusion", label="Generating")
        yield {job_id: job.id, go: gr.Button(interactive=False)}
        for line in follow(job):
            yield {status: line}
        gen = outcome(job, "Generating")
        if gen is None:
            yield {status: "Stopped: nothing to show (press Generate again).", go: gr.Button(interactive=True)}
            return
        yield {status: views.status_markdown(gen), images: views.gallery_items(gen), go: gr.Button(interactive=True),
               latents: gr.Gallery(value=views.latent_items(gen.frames, gen.steps) if gen.frames else None,
                                   visible=bool(gen.frames))}

    go.click(start, [prompt, model, s["scheduler"], s["steps"], s["guidance"], s["seed"], s["n"]],
             [job_id, go, status, images, latents], api_visibility="private", concurrency_limit=None,
             show_progress="hidden").then(lambda: gr.Button(interactive=True), None, go, api_visibility="private")


def build_filmstrip_tab():
    gr.Markdown("One seed, denoised step by step. Top row: the noisy image **x_t** the model sees at that step. "
                "Bottom row: the model's guess of the clean image **x̂_0** from it. The model predicts the noise ε̂, "
                "so x̂_0 = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t: at the noisiest steps √ᾱ_t is tiny and the guess is "
                "unstable (clipped noise); then it becomes a blurry average digit, and the details settle last.")
    prompt = gr.Textbox(value="a handwritten 3", label="Prompt")
    s = settings_row()
    at = gr.Textbox(value="", label="Show steps", placeholder="e.g. 1, 5, 10, 20, 30, 40, 50 (empty: 8 spread out)")
    go, stop, job_id = run_buttons("Run the filmstrip")
    status = gr.Markdown("")
    x_t = gallery("x_t: what the model sees", columns=8, height=220)
    x0 = gallery("predicted x_0: what it thinks the clean digit is", columns=8, height=220)

    def start(prompt_v, sched, steps, guidance, seed, at_v):
        try:
            logic.check_frames(at_v, logic.check_steps(steps))
            logic.check_scheduler(sched), logic.check_seed(seed), logic.parse_prompt(prompt_v)
        except UserError as exc:
            raise ui_error(exc) from None
        job = jobs.submit(lambda j: logic.filmstrip(prompt_v, sched, steps, seed, at_v, guidance, on_step=_on_step(j)),
                          key=JOB_KEY, kind="diffusion", label="The filmstrip")
        yield {job_id: job.id, go: gr.Button(interactive=False)}
        for line in follow(job):
            yield {status: line}
        strip = outcome(job, "The filmstrip")
        if strip is None:
            yield {status: "Stopped.", go: gr.Button(interactive=True)}
            return
        yield {status: views.status_markdown(strip.generation, "Denoised"), x_t: views.filmstrip_items(strip, "x_t"),
               x0: views.filmstrip_items(strip, "x0"), go: gr.Button(interactive=True)}

    go.click(start, [prompt, s["scheduler"], s["steps"], s["guidance"], s["seed"], at],
             [job_id, go, status, x_t, x0], api_visibility="private", concurrency_limit=None,
             show_progress="hidden").then(lambda: gr.Button(interactive=True), None, go, api_visibility="private")


def build_grid_tab():
    gr.Markdown("Every scheduler at several step counts, **from the same starting noise**. Deterministic "
                "samplers (DDIM, DPM-Solver++, Euler) converge to one digit as steps grow; ancestral ones "
                "(DDPM, Euler ancestral) add fresh noise each step and keep changing. Each cell shows its time.")
    with gr.Row():
        prompt = gr.Textbox(value="a handwritten 5", label="Prompt", scale=2)
        names = gr.CheckboxGroup(SCHEDULER_CHOICES, value=SCHEDULER_CHOICES, label="Schedulers", scale=3)
    with gr.Row():
        steps = gr.Textbox(value=", ".join(map(str, logic.DEFAULT_GRID_STEPS)), label="Step counts", min_width=160)
        s = settings_row(steps=False, scheduler=False)
    go, stop, job_id = run_buttons("Run the grid")
    status = gr.Markdown("")
    cells = gr.Image(label="Scheduler x steps (rows: schedulers, columns: steps; time and classifier reading under "
                           "each cell)", type="pil", format="png", buttons=["download", "fullscreen"], height=None)
    table = gr.Dataframe(label="Time per cell", interactive=False, visible=False)

    def start(prompt_v, names_v, steps_v, guidance, seed):
        try:
            if not names_v:
                raise logic.BadSetting("Tick at least one scheduler.")
            steps_list = logic.int_list(steps_v, "Step counts", 1, logic.MAX_STEPS)
            if not steps_list:
                raise logic.BadSetting("Give at least one step count, e.g. 5, 10, 25, 50.")
            logic.parse_prompt(prompt_v), logic.check_seed(seed)
        except UserError as exc:
            raise ui_error(exc) from None

        def work(j):
            def on_cell(i, total):
                j.report(i / total, f"cell {i}/{total}")
                j.check_stop()
            return logic.grid(prompt_v, names_v, steps_list, seed, guidance, on_cell=on_cell)

        job = jobs.submit(work, key=JOB_KEY, kind="diffusion", label="The grid")
        yield {job_id: job.id, go: gr.Button(interactive=False)}
        for line in follow(job):
            yield {status: line}
        result = outcome(job, "The grid")
        if result is None:
            yield {status: "Stopped.", go: gr.Button(interactive=True)}
            return
        total = sum(c.seconds for c in result)
        yield {status: f"{len(result)} cells in {total:.2f} s of sampling · seed {int(seed)} · guidance {guidance:g}",
               cells: views.grid_image(result),
               table: gr.Dataframe(value=views.grid_table(result), visible=True), go: gr.Button(interactive=True)}

    go.click(start, [prompt, names, steps, s["guidance"], s["seed"]], [job_id, go, status, cells, table],
             api_visibility="private", concurrency_limit=None,
             show_progress="hidden").then(lambda: gr.Button(interactive=True), None, go, api_visibility="private")


def build_sweep_tab():
    gr.Markdown("Classifier-free guidance: the model predicts the noise twice, for the digit and for the "
                "null class, and moves `guidance` times the difference away from the null prediction. "
                "0 ignores the digit (unconditional), 1 is the plain conditional model, higher values make the "
                "digit more typical and less varied. Same seeds in every row.")
    prompt = gr.Textbox(value="a handwritten 4", label="Prompt")
    with gr.Row():
        values = gr.Textbox(value=", ".join(f"{v:g}" for v in logic.DEFAULT_SWEEP), label="Guidance values",
                            min_width=180)
        n = gr.Slider(1, logic.MAX_SWEEP_N, value=logic.DEFAULT_SWEEP_N, step=1, label="Images per value",
                      min_width=160)
    s = settings_row(guidance=False)
    go, stop, job_id = run_buttons("Run the sweep")
    status = gr.Markdown("")
    cells = gr.Image(label="Rows: guidance values; columns: seeds (the classifier's reading under each)", type="pil",
                     format="png", buttons=["download", "fullscreen"])
    table = gr.Dataframe(label="Read as the asked digit, per guidance", interactive=False, visible=False)

    def start(prompt_v, values_v, n_v, sched, steps, seed):
        try:
            parsed = logic.parse_prompt(prompt_v)
            if parsed.unconditional:
                raise logic.BadSetting("A guidance sweep needs a digit to guide towards: type one.")
            logic.int_list(values_v, "Guidance values", 0, logic.MAX_GUIDANCE, integer=False,
                           max_len=logic.MAX_SWEEP_VALUES)
            logic.check_steps(steps), logic.check_seed(seed), logic.check_scheduler(sched)
        except UserError as exc:
            raise ui_error(exc) from None

        def work(j):
            def on_cell(i, total):
                j.report(i / total, f"guidance value {i}/{total}")
                j.check_stop()
            return logic.guidance_sweep(prompt_v, sched, steps, seed, values_v, n_v, on_cell=on_cell)

        job = jobs.submit(work, key=JOB_KEY, kind="diffusion", label="The sweep")
        yield {job_id: job.id, go: gr.Button(interactive=False)}
        for line in follow(job):
            yield {status: line}
        result = outcome(job, "The sweep")
        if result is None:
            yield {status: "Stopped.", go: gr.Button(interactive=True)}
            return
        yield {status: f"Understood: **{parsed.understood}** · {sched or logic.DEFAULT_SCHEDULER}, "
                       f"{int(steps)} steps, "
                       f"seeds {int(seed)}-{int(seed) + int(n_v) - 1}",
               cells: views.sweep_image(result, int(seed)),
               table: gr.Dataframe(value=pd.DataFrame(logic.sweep_summary(result, parsed.label)), visible=True),
               go: gr.Button(interactive=True)}

    go.click(start, [prompt, values, n, s["scheduler"], s["steps"], s["seed"]], [job_id, go, status, cells, table],
             api_visibility="private", concurrency_limit=None,
             show_progress="hidden").then(lambda: gr.Button(interactive=True), None, go, api_visibility="private")


def build_schedule_tab(demo: gr.Blocks):
    gr.Markdown("The forward process adds noise: x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε. **β_t** is the noise added at "
                "step t, **ᾱ_t** (alpha-bar) how much of the image is left, and the **signal-to-noise ratio** "
                "ᾱ_t / (1−ᾱ_t) falls from 10⁴ to 10⁻⁴ over the 1000 training steps.")
    with gr.Row():
        curves = gr.LinePlot(x="t", y="value", color="quantity", title="β_t, ᾱ_t and √ᾱ_t", height=260,
                             x_title="timestep t", y_title="value")
        snr = gr.LinePlot(x="t", y="log10_snr", title="log₁₀ SNR", height=260, x_title="timestep t",
                          y_title="log10(ᾱ/(1−ᾱ))")
    with gr.Row():
        sched = gr.Dropdown(SCHEDULER_CHOICES, value=logic.DEFAULT_SCHEDULER, label="Sampler", min_width=150)
        steps = gr.Slider(1, 200, value=logic.DEFAULT_STEPS, step=1, label="Steps", min_width=160)
    visited = gr.Markdown("")

    def show_visits(name, n):
        try:
            return views.schedule_note(logic.schedule_table()[0], name, logic.timesteps_of(name, n))
        except UserError as exc:
            raise ui_error(exc) from None

    def fill(name, n):  # on page load: torch and diffusers are imported after the page is up
        wide, long = logic.schedule_table()
        return {curves: long, snr: wide, visited: show_visits(name, n)}

    demo.load(fill, [sched, steps], [curves, snr, visited], api_visibility="private")
    gr.on([sched.change, steps.release], show_visits, [sched, steps], visited, api_visibility="private")

    gr.Markdown("### A real digit, noised and denoised back (img2img)")
    with gr.Row():
        digit = gr.Slider(0, 9, value=3, step=1, label="Real digit", min_width=140)
        index = gr.Slider(0, 170, value=0, step=1, label="Example", info="which of sklearn's examples", min_width=140)
        strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength",
                             info="how far into the noise (1 = all the way)", min_width=160)
        target = gr.Textbox(value="", label="Denoise towards", placeholder="empty: the same digit; or 'an 8'",
                            min_width=160)
    with gr.Row():
        seed = gr.Number(value=logic.DEFAULT_SEED, precision=0, minimum=0, maximum=logic.MAX_SEED, label="Seed")
        go = gr.Button("Noise it and denoise it back", variant="primary")
    forward = gallery("The forward process on this digit (one noise draw, growing t)", columns=6, height=200)
    result = gallery("img2img: real, noised, denoised", columns=3, height=200)
    status = gr.Markdown("")

    def run(digit_v, index_v, strength_v, target_v, seed_v, sched_v, steps_v):
        try:
            rows = logic.forward_noise(digit_v, index_v, seed=seed_v)
            out = logic.img2img(digit_v, index_v, strength_v, target_v, sched_v, steps_v, logic.DEFAULT_GUIDANCE,
                                seed_v)
        except Exception as exc:  # noqa: BLE001  one line for the user
            raise ui_error(exc, "img2img") from None
        return {forward: views.forward_items(rows), result: views.img2img_items(out),
                status: f"Real digit {int(digit_v)} (sklearn example #{out.position}) noised to t={out.t_start:.0f} "
                        f"(√ᾱ = {out.alpha_bar ** 0.5:.2f} of the image left), denoised in {out.steps_run} "
                        f"{sched_v} steps in {out.seconds:.2f} s; the classifier reads **{out.classified}**."}

    go.click(run, [digit, index, strength, target, seed, sched, steps], [forward, result, status],
             api_visibility="private", concurrency_limit=2)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title=lab_title(__file__)) as demo:
        lab_header(__file__)
        with gr.Tabs():
            with gr.Tab("Generate"):
                build_generate_tab()
            with gr.Tab("Filmstrip"):
                build_filmstrip_tab()
            with gr.Tab("Grid"):
                build_grid_tab()
            with gr.Tab("Guidance sweep"):
                build_sweep_tab()
            with gr.Tab("Schedule & img2img"):
                build_schedule_tab(demo)
        demo.load(lambda: jobs.submit(lambda job: logic.preload(), key="diffusion_preload", kind="preload") and None,
                  None, None, api_visibility="private", queue=False)
        gr.api(generate_api, api_name="generate", concurrency_limit=4)
        gr.api(filmstrip_api, api_name="filmstrip", concurrency_limit=4)
        gr.api(schedulers_api, api_name="schedulers", concurrency_limit=None)
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
