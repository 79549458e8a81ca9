"""The models that write the answer: the embedded SmolLM2-135M (small, offline), a Hub model
on a GPU, any OpenAI-compatible endpoint (vLLM, TGI, Ollama, ...) by URL, or no model at all
(extractive: quotes the best sentences). All stream text pieces."""
from collections.abc import Callable, Iterator

from shared.device import gpu
from shared.errors import UserError
from shared.imports import transformers_ready

MAX_NEW_TOKENS = 120  # SmolLM2-135M writes ~24 tokens/s on a laptop CPU: keep answers short

EXTRACTIVE = "Extractive (no LLM: quotes the best sentences)"
ENDPOINT = "OpenAI-compatible endpoint (vLLM, TGI, Ollama…)"


def generator_choices() -> list[str]:
    from shared.models import REGISTRY

    return [s.name for s in REGISTRY["chat"]] + [ENDPOINT, EXTRACTIVE]


class GeneratorError(UserError):
    """The message is for the UI."""


class LocalGenerator:
    """A transformers causal LM loaded through shared.loading (the embedded SmolLM2 offline)."""

    kind = "local"

    def __init__(self, requested: str | None = None):
        from shared.device import pick_device
        from shared.loading import load_causal_lm
        from shared.models import ModelUnavailable, default, find

        spec = find("chat", requested) if requested else default("chat")
        if spec.embedded:
            requested = None
        elif spec.needs_gpu and pick_device() == "cpu":
            raise GeneratorError(f"{spec.name} needs a GPU (minutes per answer and tens of GB on a CPU). Run it on "
                                 "a GPU Space, or serve it with vLLM/TGI/Ollama and pick the endpoint.")
        try:
            self.loaded = load_causal_lm(spec.hub_id if requested else None, fallback=True)
        except ModelUnavailable as exc:
            raise GeneratorError(str(exc)) from exc
        spec = self.loaded.choice.spec
        self.name = spec.name
        self.status = self.loaded.status + (
            " — a *very small* model: fluent for a sentence or two, often wrong; "
            "read the cited sources, and use a bigger model or an endpoint for real answers." if spec.weak else "")

    def prompt_text(self, messages) -> str:
        tok = self.loaded.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"

    def stream(self, messages, max_new_tokens: int = MAX_NEW_TOKENS,
               should_stop: Callable[[], bool] | None = None) -> Iterator[str]:
        """The answer in pieces as the model writes them; `should_stop()` turning true (a job's stop
        request) ends generation at the next token.

        The answer joins the model's shared batch (shared.batching): the answers of every user of
        this process, and the decoding explorer's runs on the same model, share one forward pass per
        token. Greedy with repetition penalty 1.1: token for token what model.generate gives alone."""
        transformers_ready()
        model, tok = self.loaded.model, self.loaded.tokenizer
        ids = tok(self.prompt_text(messages), add_special_tokens=False)["input_ids"]
        if not ids:
            raise GeneratorError("The prompt for the model is empty.")
        try:
            yield from answer_pieces(model, tok, ids, int(max_new_tokens), should_stop)
        except RuntimeError as exc:  # the engine failed this request (e.g. a prompt longer than the model's context)
            raise GeneratorError(f"Generation failed: {exc}") from exc


@gpu(duration=120)
def answer_pieces(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, should_stop=None) -> Iterator[str]:
    """Text pieces of a greedy answer (repetition penalty 1.1) from the model's shared batch; on
    ZeroGPU this is the GPU call inside which the engine runs (shared.batching's inline mode)."""
    from shared import batching

    yield from batching.stream_text(model, tokenizer, prompt_ids, batching.Sampling(repetition_penalty=1.1),
                                    max_new_tokens, should_stop)


def normalize_base_url(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.startswith(("http://", "https://")):
        raise GeneratorError("The endpoint URL must start with http:// or https:// "
                             "(e.g. http://localhost:8000/v1 for vLLM, http://localhost:11434/v1 for Ollama).")
    if not url.endswith("/v1"):
        url += "/v1"
    return url


class EndpointGenerator:
    """Any server that speaks the OpenAI chat-completions protocol, through
    huggingface_hub.InferenceClient(base_url=...): vLLM, TGI, Ollama, llama.cpp server, ..."""

    kind = "endpoint"

    def __init__(self, url: str, model: str = "", api_key: str = "", timeout: float = 60):
        from huggingface_hub import InferenceClient

        self.base_url = normalize_base_url(url)
        self.model = (model or "").strip() or None
        self.client = InferenceClient(base_url=self.base_url, api_key=(api_key or "").strip() or "-", timeout=timeout)
        self.name = f"{self.model or 'default model'} @ {self.base_url}"
        self.status = (f"**{self.name}** · OpenAI-compatible endpoint · the server does the generation "
                       "(this is how you scale out: vLLM/TGI on a GPU box, or Ollama on a laptop)")

    def prompt_text(self, messages) -> str:
        from rag_answer import render_messages

        return render_messages(messages)

    def stream(self, messages, max_new_tokens: int = 256,
               should_stop: Callable[[], bool] | None = None) -> Iterator[str]:
        try:
            for event in self.client.chat_completion(messages, model=self.model, stream=True,
                                                     max_tokens=int(max_new_tokens), temperature=0.0):
                if should_stop is not None and should_stop():
                    break
                choices = getattr(event, "choices", None) or []
                delta = choices[0].delta.content if choices and choices[0].delta else None
                if delta:
                    yield delta
        except GeneratorError:
            raise
        except Exception as exc:
            raise GeneratorError(f"The endpoint {self.base_url} failed: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc


class ExtractiveGenerator:
    """No language model: the answer is the retrieved sentences that best match the question."""

    kind = "extractive"
    name = EXTRACTIVE
    status = ("**Extractive** · no language model: quotes the sentences that best match the question, "
              "with citations. Instant, never invents anything, but cannot rephrase or combine.")

    def prompt_text(self, messages) -> str:
        from rag_answer import render_messages

        return "(no prompt: nothing is generated)\n\n" + render_messages(messages)


def make_generator(choice: str, url: str = "", model: str = "", api_key: str = ""):
    if choice == EXTRACTIVE:
        return ExtractiveGenerator()
    if choice == ENDPOINT:
        if not (url or "").strip():
            raise GeneratorError("Give the endpoint's URL (e.g. http://localhost:8000/v1).")
        return EndpointGenerator(url, model, api_key)
    return LocalGenerator(choice)
