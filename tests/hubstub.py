"""A stand-in Hugging Face Hub on 127.0.0.1 for tests: the Hub path of every lab, exercised offline.

It serves real model repos made at test time from the project's tiny models (the tiny GPT-2 of
conftest.py, a tiny BERT token classifier, a tiny sentence embedder, a tiny diffusers UNet) with the
endpoints and headers huggingface_hub 2.4 / transformers 5.23 use:
  HEAD/GET /{repo}/resolve/{revision}/{file}   X-Repo-Commit, ETag, Content-Length, Range (206);
                                               404 EntryNotFound / RepoNotFound, 401 GatedRepo
  GET /api/models/{repo}[/revision/{rev}]      sha, siblings (sizes with ?blobs=true), safetensors
                                               parameter counts, config, gated
  GET /api/models/{repo}/tree/{rev}[/{path}]   files and folders, ?recursive=true
plus metadata-only entries whose files are never served (an 800 GB model), and knobs: a gated repo,
a connection that drops mid-file, a request held until the test releases it (a slow Hub).

`hub` (a pytest fixture: `from hubstub import hub`) starts one per test and points huggingface_hub,
transformers, sentence-transformers and shared.hub at it, with a temporary HF cache and no token."""
from __future__ import annotations

import functools
import hashlib
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

GPT2 = "tiny-org/tiny-gpt2"  # a repo a user types into a lab
REGISTRY_GPT2 = "openai-community/gpt2"  # the registry's gpt2, served as the same tiny model
BERT_NER = "tiny-org/tiny-bert-ner"
REGISTRY_NER = "dslim/bert-base-NER"  # the NER lab's Hub tagger, served as the same tiny token classifier
EMBEDDER = "tiny-org/tiny-embedder"
REGISTRY_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"  # the RAG lab's re-ranker, served as a tiny cross-encoder
UNET = "tiny-org/tiny-unet"
TOKENIZER_ONLY = "tiny-org/tokenizer-only"
GATED = "gated-org/tiny-gated"
HUGE = "giant-org/huge-800gb"
HUGE_PARAMS = 400_000_000_000  # bf16 -> 800 GB of files, 1.6 TB at fp32
FIVE = [f"tiny-org/gpt2-{c}" for c in "abcde"]  # five different tiny models (the bounded cache)


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # metadata-only files (never served)
    gated: bool = False
    safetensors_total: int | None = None
    safetensors_params: dict[str, int] = field(default_factory=dict)
    config: dict | None = None

    @property
    def sha(self) -> str:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha1(self.files[name]).digest())
        for name in sorted(self.sizes):
            digest.update(f"{name}:{self.sizes[name]}".encode())
        return digest.hexdigest()

    def size(self, name: str) -> int:
        return len(self.files[name]) if name in self.files else self.sizes[name]

    def names(self) -> list[str]:
        return sorted(set(self.files) | set(self.sizes))


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _params(files: dict[str, bytes]) -> tuple[int, dict[str, int]]:
    """Parameter counts per dtype from the safetensors headers, as the Hub computes them."""
    import struct

    per_dtype: dict[str, int] = {}
    for name, data in files.items():
        if not name.endswith(".safetensors"):
            continue
        n = struct.unpack("<Q", data[:8])[0]
        for key, tensor in json.loads(data[8:8 + n]).items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in tensor["shape"]:
                count *= dim
            per_dtype[tensor["dtype"]] = per_dtype.get(tensor["dtype"], 0) + count
    return sum(per_dtype.values()), per_dtype


def _repo_from(folder: Path, **kw) -> Repo:
    files = _folder_files(folder)
    total, per_dtype = _params(files)
    config = json.loads(files["config.json"]) if "config.json" in files else None
    return Repo(files, safetensors_total=total or None, safetensors_params=per_dtype,
                config={k: config[k] for k in ("architectures", "model_type") if k in config} if config else None,
                **kw)


def _bert_tokenizer():
    from transformers import AutoTokenizer

    from shared import embedded

    return AutoTokenizer.from_pretrained(str(embedded.minilm_folder()))


@functools.cache
def _root() -> Path:
    return Path(tempfile.mkdtemp(prefix="hubstub-"))


@functools.cache
def _gpt2_tokenizer_files() -> dict[str, bytes]:
    from conftest import build_tiny_gpt2

    _, tok = build_tiny_gpt2()
    folder = _root() / "gpt2-tokenizer"
    tok.save_pretrained(folder)
    return _folder_files(folder)


def _gpt2(seed: int) -> Repo:
    """The tiny GPT-2 of conftest.py (2 layers, 32 wide, the real GPT-2 BPE), seeded."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=50257, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    folder = _root() / f"gpt2-{seed}"
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    repo = _repo_from(folder)
    repo.files.update(_gpt2_tokenizer_files())
    return repo


def _gated() -> Repo:
    repo = _gpt2(2)
    repo.gated = True
    return repo


def _tokenizer_only() -> Repo:
    return Repo(dict(_gpt2_tokenizer_files()))


SMALL_BERT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=128)


def _bert_ner() -> Repo:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    tok = _bert_tokenizer()
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(vocab_size=tok.vocab_size, **SMALL_BERT, num_labels=len(labels),
                                                  id2label=dict(enumerate(labels)),
                                                  label2id={l: i for i, l in enumerate(labels)}))
    with torch.no_grad():  # random weights, but a known answer: every word piece leans to B-PER
        model.classifier.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0]))
    folder = _root() / "bert-ner"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return _repo_from(folder)


def _embedder() -> Repo:
    import torch
    from sentence_transformers import SentenceTransformer, models as st_models
    from transformers import BertConfig, BertModel

    tok = _bert_tokenizer()
    torch.manual_seed(0)
    base = _root() / "bert-base"
    BertModel(BertConfig(vocab_size=tok.vocab_size, **SMALL_BERT)).save_pretrained(base)
    tok.save_pretrained(base)
    word = st_models.Transformer(str(base), max_seq_length=64)
    SentenceTransformer(modules=[word, st_models.Pooling(16, "mean")]).save(str(_root() / "embedder"))
    return _repo_from(_root() / "embedder")


def _reranker() -> Repo:
    """A tiny BERT cross-encoder (one relevance score per pair), as sentence-transformers saves one."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    tok = _bert_tokenizer()
    torch.manual_seed(0)
    base = _root() / "reranker-base"
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, **SMALL_BERT, num_labels=1)).save_pretrained(base)
    tok.save_pretrained(base)
    CrossEncoder(str(base), local_files_only=True).save(str(_root() / "reranker"))
    return _repo_from(_root() / "reranker")


def _unet() -> Repo:
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                norm_num_groups=4).save_pretrained(_root() / "unet")
    return _repo_from(_root() / "unet")


def _huge() -> Repo:
    shards = 160
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    sizes = {f"model-{i:05d}-of-{shards:05d}.safetensors": HUGE_PARAMS * 2 // shards for i in range(1, shards + 1)}
    return Repo(files={"config.json": json.dumps(config).encode()}, sizes=sizes | {"model.safetensors.index.json": 40_000},
                safetensors_total=HUGE_PARAMS, safetensors_params={"BF16": HUGE_PARAMS}, config=config)


BUILDERS = {GPT2: lambda: _gpt2(0), REGISTRY_GPT2: lambda: _gpt2(1), GATED: _gated, TOKENIZER_ONLY: _tokenizer_only,
            BERT_NER: _bert_ner, REGISTRY_NER: _bert_ner, EMBEDDER: _embedder, REGISTRY_RERANKER: _reranker, UNET: _unet, HUGE: _huge}
BUILDERS |= {name: (lambda seed=10 + i: _gpt2(seed)) for i, name in enumerate(FIVE)}


class Repos:
    """The repos the stand-in serves, each built on first request and kept for the test process."""

    _built: dict[str, Repo] = {}
    _lock = threading.Lock()

    def get(self, name: str) -> Repo | None:
        if name not in BUILDERS:
            return None
        with self._lock:
            if name not in self._built:
                self._built[name] = BUILDERS[name]()
            return self._built[name]


class HubStub:
    """The server; `requests` logs (method, repo, file or api path, Range header) of every request."""

    def __init__(self, repos: Repos | None = None):
        self.repos = repos or Repos()
        self.requests: list[tuple[str, str, str, str]] = []
        self.drops: dict[tuple[str, str], list[int]] = {}  # (repo, file) -> bytes to send before each drop
        self.holds: list[tuple[re.Pattern, threading.Event]] = []
        self.held: list[str] = []  # paths waiting on a hold right now
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------ knobs
    def prepare(self, *names: str) -> "HubStub":
        """Build these repos now (the first build of the UNet imports diffusers: seconds), so no request
        waits on it."""
        for name in names:
            self.repos.get(name)
        return self

    def drop(self, repo: str, filename: str, after_bytes: int, times: int = 1) -> None:
        """The next `times` GETs of `filename` send `after_bytes` of the body and close the connection."""
        self.drops[(repo, filename)] = [after_bytes] * times

    def hold(self, pattern: str) -> threading.Event:
        """Requests whose path matches `pattern` wait until the returned event is set (a slow Hub)."""
        event = threading.Event()
        self.holds.append((re.compile(pattern), event))
        return event

    def served(self, repo: str) -> list[tuple[str, str, str, str]]:
        """The file requests (HEAD or GET of /resolve/) made for `repo`."""
        return [r for r in self.requests if r[1] == repo and r[0] in ("HEAD", "GET") and not r[2].startswith("api:")]

    # ------------------------------------------------------------ server
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                stub._handle(self, head=True)

            def do_GET(self):
                stub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="hubstub").start()
        return self

    def stop(self) -> None:
        for _, event in self.holds:
            event.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------ answers
    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parts = urlsplit(h.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        for pattern, event in self.holds:
            if pattern.search(path):
                self.held.append(path)
                event.wait(60)
                self.held.remove(path)
        try:
            if path.startswith("/api/models/"):
                self._api(h, path[len("/api/models/"):], query)
            else:
                self._resolve(h, path.lstrip("/"), head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        headers = {"Content-Length": len(body)} | (headers or {})
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, str(value))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _error(self, h, status: int, code: str, head: bool = False) -> None:
        body = json.dumps({"error": code}).encode()
        self._send(h, status, b"" if head else body, {"X-Error-Code": code, "Content-Type": "application/json"}, head)

    def _json(self, h, data) -> None:
        self._send(h, 200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _api(self, h, rest: str, query: dict) -> None:
        bits = rest.split("/")
        repo_id, tail = "/".join(bits[:2]), bits[2:]
        self.requests.append(("GET", repo_id, "api:" + "/".join(tail), ""))
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound")
        if not tail or tail[0] == "revision":
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for name in repo.names():
                row = {"rfilename": name}
                if blobs:
                    row |= {"size": repo.size(name), "blobId": self._oid(repo, name)}
                    if name.endswith(".safetensors"):
                        row["lfs"] = {"sha256": self._oid(repo, name, 256), "size": repo.size(name), "pointerSize": 134}
                siblings.append(row)
            data = {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                    "gated": "manual" if repo.gated else False, "disabled": False, "siblings": siblings, "tags": [],
                    "downloads": 0, "likes": 0}
            if repo.config:
                data["config"] = repo.config
            if repo.safetensors_total:
                data["safetensors"] = {"parameters": repo.safetensors_params, "total": repo.safetensors_total}
            return self._json(h, data)
        if tail[0] == "tree":
            revision, folder = tail[1] if len(tail) > 1 else "main", "/".join(tail[2:])
            if revision not in ("main", repo.sha):
                return self._error(h, 404, "RevisionNotFound")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._tree(h, repo, folder, recursive)
        return self._error(h, 404, "EntryNotFound")

    def _tree(self, h, repo: Repo, folder: str, recursive: bool) -> None:
        prefix = folder + "/" if folder else ""
        names = [n for n in repo.names() if n.startswith(prefix)]
        if folder and not names:
            return self._error(h, 404, "EntryNotFound")
        entries, dirs = [], set()
        for name in names:
            rel = name[len(prefix):]
            if "/" in rel and not recursive:
                dirs.add(prefix + rel.split("/")[0])
                continue
            if recursive:
                parts = name.split("/")
                dirs.update("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]).startswith(prefix))
            row = {"type": "file", "oid": self._oid(repo, name), "size": repo.size(name), "path": name}
            if name.endswith(".safetensors"):
                row["lfs"] = {"oid": self._oid(repo, name, 256), "size": repo.size(name), "pointerSize": 134}
            entries.append(row)
        entries += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                    for d in sorted(dirs - {folder})]
        self._json(h, entries)

    @staticmethod
    def _oid(repo: Repo, name: str, bits: int = 1) -> str:
        data = repo.files.get(name, f"{name}:{repo.sizes.get(name)}".encode())
        return (hashlib.sha256 if bits == 256 else hashlib.sha1)(data).hexdigest()

    def _resolve(self, h, rest: str, head: bool) -> None:
        match = re.match(r"^([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", rest)
        rng = h.headers.get("Range", "")
        if not match:
            self.requests.append(("HEAD" if head else "GET", "", rest, rng))
            return self._error(h, 404, "EntryNotFound", head)
        repo_id, revision, name = match.groups()
        self.requests.append(("HEAD" if head else "GET", repo_id, name, rng))
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", head)
        if repo.gated:
            return self._error(h, 401, "GatedRepo", head)
        if revision not in ("main", repo.sha):
            return self._error(h, 404, "RevisionNotFound", head)
        if name in repo.sizes:  # metadata only: a test that reaches here has already failed
            return self._error(h, 500, "NeverServed", head)
        if name not in repo.files:
            return self._error(h, 404, "EntryNotFound", head)
        data = repo.files[name]
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{self._oid(repo, name, 256)}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start = 0
        found = re.match(r"bytes=(\d+)-", rng)
        if found and not head:
            start = min(int(found.group(1)), len(data))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers["Content-Length"] = len(body) if not head else len(data)
        drops = self.drops.get((repo_id, name))
        if drops and not head:
            keep = drops.pop(0)
            h.send_response(206 if start else 200)
            for key, value in headers.items():
                h.send_header(key, str(value))
            h.end_headers()
            h.wfile.write(body[:keep])
            h.wfile.flush()
            h.close_connection = True
            return
        self._send(h, 206 if start else 200, b"" if head else body, headers, head)


def point_at(stub: HubStub, folder: Path, monkeypatch) -> None:
    """Point huggingface_hub (and through it transformers, sentence-transformers, diffusers) and
    shared.hub at `stub`, with an empty HF cache under `folder`, no token, no offline flag."""
    from huggingface_hub import constants, hf_api

    from shared import hub

    cache = folder / "hf"
    monkeypatch.setenv("HF_ENDPOINT", stub.url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GENAI_LAB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                "SPACE_ID", "GENAI_LAB_PUBLIC", "GRADIO_SERVER_NAME", "GENAI_LAB_ALLOW_ANY_MODEL",
                "GENAI_LAB_ALLOWED_MODELS", "GENAI_LAB_MODEL_BUDGET_GB"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub reads these once, at import: earlier tests imported it already.
    monkeypatch.setattr(constants, "ENDPOINT", stub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", stub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache / "stored_tokens"))
    monkeypatch.setattr(hf_api.api, "endpoint", stub.url)
    hub.forget()


def forget_hub_models() -> None:
    """Unload the Hub models earlier tests left in the bounded cache (each test has a new HF cache)."""
    from shared import loading

    loading.unload(lambda key: len(key) > 2 and key[2] == "hub")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running stand-in Hub that huggingface_hub and shared.hub point at (see point_at)."""
    stub = HubStub().start().prepare(GPT2, REGISTRY_GPT2)
    point_at(stub, tmp_path, monkeypatch)
    forget_hub_models()
    try:
        yield stub
    finally:
        stub.stop()
        forget_hub_models()
        from shared import hub as shared_hub

        shared_hub.forget()


def wait_for(condition, timeout: float = 30.0) -> bool:
    """Poll `condition()` until true (a thread reached a point); False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
