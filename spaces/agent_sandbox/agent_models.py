"""The models an agent can run on: you ("be the model"), the embedded SmolLM2-135M-Instruct, any
Hub model through HF Inference, any OpenAI-compatible endpoint (vLLM, TGI, Ollama) and a local
transformers model. Each is a smolagents Model, so the real agent loop drives all of them."""
from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

from shared.errors import UserError

HUMAN = "Be the model (you write each step)"
EMBEDDED = "SmolLM2-135M-Instruct (embedded; too weak to drive an agent)"
HF_INFERENCE = "HF Inference (any Hub model; needs a token)"
ENDPOINT = "OpenAI-compatible endpoint (vLLM, TGI, Ollama)"
LOCAL = "Local transformers model (GPU)"
CHOICES = [HUMAN, EMBEDDED, HF_INFERENCE, ENDPOINT, LOCAL]
DEFAULT_HF_MODEL = "Qwen/Qwen2.5-Coder-32B-Instruct"
MAX_NEW_TOKENS = 400
HUMAN_WAIT_SECONDS = 1800  # a run waiting this long for the attendee's next step stops
ENDPOINT_TIMEOUT = 60.0
WEAK_NOTE = ("SmolLM2-135M is embedded so the lab runs offline, but at 135M parameters it cannot follow the agent "
             "format: expect parsing errors and made-up tool calls. Run it to see an agent fail; use 'Be the model', "
             "HF Inference or your own endpoint to see one work.")
_GPT2 = Path(__file__).resolve().parents[2] / "assets" / "gpt2_tokenizer"


class ModelError(UserError):
    """A model that cannot be used as asked (no token, endpoint down, garbage answers...)."""


class Stopped(Exception):
    """The attendee stopped the run while the model was waiting."""


def _message_text(messages) -> str:
    parts = []
    for m in messages:
        content = m.content if hasattr(m, "content") else m.get("content")
        role = getattr(m, "role", None) or m.get("role")
        if isinstance(content, list):
            content = "\n".join(c.get("text", "") for c in content if isinstance(c, dict))
        parts.append(f"{getattr(role, 'value', role)}: {content or ''}")
    return "\n".join(parts)


_tokenizer: list = []
_tok_lock = threading.Lock()


def count_tokens(text: str) -> int:
    """Tokens of `text` under the GPT-2 BPE (shipped in assets): the measure for 'be the model' runs,
    which have no tokenizer of their own."""
    with _tok_lock:
        if not _tokenizer:
            from tokenizers import ByteLevelBPETokenizer

            _tokenizer.append(ByteLevelBPETokenizer(str(_GPT2 / "vocab.json"), str(_GPT2 / "merges.txt")))
    return len(_tokenizer[0].encode(text or "").ids)


def plain_messages(messages) -> list[dict]:
    """[{"role", "content"}] with text content, as shown in 'the exact messages' view."""
    out = []
    for m in messages or []:
        content = m.content if hasattr(m, "content") else m.get("content")
        role = getattr(m, "role", None) or m.get("role")
        if isinstance(content, list):
            content = "\n".join(c.get("text", "") for c in content if isinstance(c, dict))
        out.append({"role": str(getattr(role, "value", role)), "content": content or ""})
    return out


def _smol():
    from smolagents.models import ChatMessage, MessageRole, Model, TokenUsage

    return ChatMessage, MessageRole, Model, TokenUsage


def _cut_at_stop(text: str, stop_sequences) -> str:
    for stop in stop_sequences or []:
        if stop and stop in text:
            text = text[:text.index(stop)]
    return text


def human_model():
    """'Be the model': generate() publishes the messages it received and waits for the step the
    attendee types (send()); the real agent loop and the sandboxed executor run that step."""
    ChatMessage, MessageRole, Model, TokenUsage = _smol()

    class HumanModel(Model):
        def __init__(self):
            super().__init__(model_id="you")
            self.inbox: queue.Queue = queue.Queue()
            self.waiting: dict | None = None  # {"messages": [...], "tools": [...]} while it waits
            self.stopped = threading.Event()
            self.lock = threading.Lock()

        def send(self, text: str) -> bool:
            """Hand the waiting loop its step; False when it is not waiting (a double click)."""
            with self.lock:
                if self.waiting is None:
                    return False
                self.waiting = None
                self.inbox.put(text)
                return True

        def stop(self) -> None:
            self.stopped.set()
            self.inbox.put(None)

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
            with self.lock:
                self.waiting = {"messages": plain_messages(messages),
                                "tools": [t.name for t in tools_to_call_from or []]}
            deadline = time.time() + HUMAN_WAIT_SECONDS
            try:
                while True:
                    if self.stopped.is_set():
                        raise Stopped("stopped while waiting for your step")
                    try:
                        text = self.inbox.get(timeout=0.5)
                        break
                    except queue.Empty:
                        if time.time() > deadline:
                            raise Stopped("no step came for 30 minutes") from None
                if text is None:
                    raise Stopped("stopped while waiting for your step")
            finally:
                self.waiting = None
            usage = TokenUsage(input_tokens=count_tokens(_message_text(messages)), output_tokens=count_tokens(text))
            return ChatMessage(role=MessageRole.ASSISTANT, content=text, token_usage=usage)

    return HumanModel()


def embedded_model():
    """SmolLM2-135M-Instruct from the project's embedded copy, as a smolagents Model."""
    ChatMessage, MessageRole, Model, TokenUsage = _smol()
    from shared.device import gpu
    from shared.loading import load_causal_lm

    loaded = load_causal_lm()

    @gpu(duration=60)
    def _generate(prompt_ids, max_new_tokens):
        import torch

        with torch.no_grad():
            return loaded.model.generate(prompt_ids.to(loaded.model.device), max_new_tokens=max_new_tokens,
                                         do_sample=False, pad_token_id=loaded.tokenizer.eos_token_id)

    class EmbeddedModel(Model):
        def __init__(self):
            super().__init__(model_id=loaded.choice.spec.hub_id if hasattr(loaded.choice.spec, "hub_id") else "smollm2")

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
            chat = plain_messages(messages)
            chat = [{"role": "assistant" if m["role"] == "tool-response" else
                     ("user" if m["role"] not in ("system", "assistant", "user") else m["role"]),
                     "content": m["content"]} for m in chat]
            ids = loaded.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                                       return_dict=True)["input_ids"]
            ids = ids[:, -1800:]  # the model's context is 2,048 tokens; agent prompts are longer: keep the end
            out = _generate(ids, MAX_NEW_TOKENS)
            new = out[0, ids.shape[1]:]
            text = _cut_at_stop(loaded.tokenizer.decode(new, skip_special_tokens=True), stop_sequences)
            usage = TokenUsage(input_tokens=int(ids.shape[1]), output_tokens=int(new.shape[0]))
            return ChatMessage(role=MessageRole.ASSISTANT, content=text, token_usage=usage)

    return EmbeddedModel()


def endpoint_model(url: str, model_name: str, api_key: str = ""):
    """Any OpenAI-compatible /chat/completions server, called with httpx (no openai package needed)."""
    ChatMessage, MessageRole, Model, TokenUsage = _smol()
    url = (url or "").strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ModelError("Give the endpoint's base URL starting with http:// or https://, e.g. http://localhost:8000/v1")
    if not (model_name or "").strip():
        raise ModelError("Give the model name the endpoint serves (e.g. Qwen/Qwen2.5-7B-Instruct, or 'tgi').")
    target = url if url.endswith("/chat/completions") else url + "/chat/completions"

    class EndpointModel(Model):
        def __init__(self):
            super().__init__(model_id=model_name.strip())

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
            import httpx

            body = self._prepare_completion_kwargs(messages=messages, stop_sequences=stop_sequences,
                                                   tools_to_call_from=tools_to_call_from, model=self.model_id,
                                                   convert_images_to_image_urls=True)
            body.setdefault("max_tokens", 1024)
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            try:
                resp = httpx.post(target, json=_jsonable_body(body), headers=headers, timeout=ENDPOINT_TIMEOUT)
            except httpx.HTTPError as exc:
                raise ModelError(f"Could not reach the endpoint {target}: {type(exc).__name__} ({exc}). Is the "
                                 "server running, and is the URL right?") from None
            if resp.status_code >= 400:
                raise ModelError(f"The endpoint answered HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                data = resp.json()
                choice = data["choices"][0]["message"]
                usage = data.get("usage") or {}
            except (ValueError, KeyError, IndexError, TypeError):
                raise ModelError(f"The endpoint at {target} answered with something that is not an OpenAI-style "
                                 f"chat completion: {resp.text[:200]!r}") from None
            msg = ChatMessage.from_dict({"role": "assistant", "content": choice.get("content"),
                                         "tool_calls": choice.get("tool_calls")})
            if msg.content and stop_sequences:
                msg.content = _cut_at_stop(msg.content, stop_sequences)
            msg.token_usage = TokenUsage(input_tokens=int(usage.get("prompt_tokens") or 0),
                                         output_tokens=int(usage.get("completion_tokens") or 0))
            return msg

    return EndpointModel()


def _jsonable_body(body: dict) -> dict:
    return json.loads(json.dumps(body, default=lambda o: getattr(o, "value", str(o))))


def hf_inference_model(model_id: str):
    from shared.store import hub_token

    token = hub_token()
    if not token:
        raise ModelError("HF Inference needs a Hugging Face token: set HF_TOKEN or run `hf auth login`, then retry. "
                         "Offline, use 'Be the model' or your own endpoint.")
    from smolagents import InferenceClientModel

    return InferenceClientModel(model_id=(model_id or DEFAULT_HF_MODEL).strip(), token=token, timeout=120)


def local_transformers_model(model_id: str):
    from shared.device import pick_device

    if not (model_id or "").strip():
        raise ModelError("Give a Hub model id or a local folder, e.g. Qwen/Qwen2.5-Coder-7B-Instruct.")
    if pick_device() == "cpu":
        raise ModelError("A local transformers agent model needs a GPU (agents need a 7B-class model; on a CPU "
                         "it would take minutes per step). Use HF Inference or an endpoint instead.")
    from smolagents import TransformersModel

    return TransformersModel(model_id=model_id.strip(), device_map="auto", max_new_tokens=1024)


def make_model(choice: str, model_id: str = "", url: str = "", api_key: str = ""):
    """The smolagents Model for a UI choice (raises ModelError with what to do)."""
    if choice == HUMAN:
        return human_model()
    if choice == EMBEDDED:
        return embedded_model()
    if choice == HF_INFERENCE:
        return hf_inference_model(model_id)
    if choice == ENDPOINT:
        return endpoint_model(url, model_id, api_key)
    if choice == LOCAL:
        return local_transformers_model(model_id)
    raise ModelError(f"Unknown model choice {choice!r}; pick one of: {', '.join(CHOICES)}.")


def parse_api_model(spec: str) -> tuple[str, str, str]:
    """The API's model string -> (choice, model id, url): 'smollm2', 'hf:<model id>',
    'openai:<base url>|<model name>', 'transformers:<model id>'."""
    spec = (spec or "smollm2").strip()
    low = spec.lower()
    if low in ("smollm2", "embedded", EMBEDDED.lower()):
        return EMBEDDED, "", ""
    if low.startswith("hf:"):
        return HF_INFERENCE, spec[3:], ""
    if low.startswith("transformers:"):
        return LOCAL, spec[len("transformers:"):], ""
    if low.startswith("openai:"):
        url, _, name = spec[len("openai:"):].partition("|")
        return ENDPOINT, name, url
    if low in ("human", "be the model", HUMAN.lower()):
        raise ModelError("'Be the model' is interactive: use it in the browser. The API takes 'smollm2', "
                         "'hf:<model id>', 'openai:<base url>|<model name>' or 'transformers:<model id>'.")
    raise ModelError(f"Unknown model {spec[:100]!r}: use 'smollm2', 'hf:<model id>', 'openai:<base url>|<model name>' "
                     "or 'transformers:<model id>'.")
