"""NER tagger lab benchmark: entity-level P/R/F1 (seqeval, PER/ORG/LOC) and sentences/s of every
offline tagger on the shipped hand-labelled gold set, next to plain spaCy and a plain
transformers pipeline over the student folder, in the same run.

    python bench/ner_tagger.py [--split test|speeches|...|all] [--write]   (any split of the gold set)
    python bench/ner_tagger.py --conll FILE [--min-tokens 8]               (your own CoNLL-style gold file)
    python bench/ner_tagger.py --long-text                                 (one Tag of 100,000 characters)

--conll scores the same taggers on sentences labelled by someone else (e.g. a CoNLL-2003 file you have; the
lab ships none: its licence forbids it), detokenized; PER/ORG/LOC as in the gold set.
--long-text times the lab's Tag of 100,000 characters with best, spaCy and the student (spaCy's parse and the
student's pieces run once, shared) against the three models run one after the other on their own.
--write puts the table in bench/results/ner_tagger.md."""
import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))  # the lab's own modules (shared is installed)

import shared.bootstrap  # noqa: E402,F401
import ner_eval  # noqa: E402
import ner_models  # noqa: E402


def plain_pipeline():
    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(ner_models.student_folder()), aggregation_strategy="simple",
                    device="cpu")

    def tag(text):
        return [{"start": e["start"], "end": e["end"], "coarse": e["entity_group"]} for e in pipe(text)]

    return tag


def plain_spacy():
    from shared.loading import load_spacy

    nlp = load_spacy()
    mapping = {"PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC"}

    def tag(text):
        return [{"start": e.start_char, "end": e.end_char, "coarse": mapping[e.label_]}
                for e in nlp(text).ents if e.label_ in mapping]

    return tag


def measure(name, tag, gold, note=""):
    tag(gold[0]["text"])  # warm-up (loads the model)
    t0 = time.perf_counter()
    pairs = [(g["text"], g["entities"], tag(g["text"])) for g in gold]
    secs = time.perf_counter() - t0
    s = ner_eval.score(pairs)
    per = {t: s["per_type"].get(t, {}).get("f1", 0.0) for t in ner_eval.EVAL_TYPES}
    return {"name": name, "p": s["precision"], "r": s["recall"], "f1": s["f1"], "per": per,
            "sps": len(gold) / secs, "note": note}


def long_text(chars: int = 100_000) -> str:
    """One Tag of `chars` characters of gold sentences: the lab's shared stages vs each model on its own."""
    import ner_service

    text = "\n".join(g["text"] for g in ner_eval.load_gold())[:chars]
    ner_service.tag_models("Loading.", ner_service.DEFAULT_MODELS)  # loads every model first
    t0 = time.perf_counter()
    run = ner_service.tag_models(text, ner_service.DEFAULT_MODELS)
    lab = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = {"spaCy": ner_models.SPACY.tag(text), "student": ner_models.STUDENT.tag(text, "max"),
             "best": ner_models.BEST.tag(text)}
    plain = time.perf_counter() - t0
    same = all([(e["start"], e["end"], e["coarse"]) for e in run["results"][n]] ==
               [(e["start"], e["end"], e["coarse"]) for e in alone[n]] for n in alone)
    return (f"One Tag of {len(text):,} characters with best, spaCy and the student: **{lab:.1f} s** in the lab "
            f"(spaCy's parse and the student's pieces run once) vs {plain:.1f} s for the three models on their own, "
            f"one after the other; same entities: {'yes' if same else 'NO'}.")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="all", choices=["all", *ner_eval.gold_split_sizes()])
    parser.add_argument("--conll", type=Path, help="score on this CoNLL-style file instead of the gold set")
    parser.add_argument("--min-tokens", type=int, default=1, help="with --conll: leave out shorter sentences")
    parser.add_argument("--long-text", action="store_true", help="time one Tag of 100,000 characters")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    if args.long_text:
        print(long_text())
        return
    if args.conll:
        gold, args.split = ner_eval.load_conll(args.conll, args.min_tokens), args.conll.name
        if not gold:
            parser.error(f"no sentence of {args.min_tokens}+ tokens in {args.conll}")
    else:
        gold = ner_eval.load_gold(None if args.split == "all" else args.split)
    rows = [
        measure("plain spaCy (PERSON/ORG/GPE/LOC, spans as given)", plain_spacy(), gold, "baseline"),
        measure("lab `spaCy` (+FAC→LOC, native spans)", ner_models.SPACY.tag, gold),
        measure("spaCy + span clean-up (one of the student's two teachers)",
                lambda t: ner_models.spacy_doc_entities(ner_models.SPACY.doc(t)), gold),
        measure("plain transformers pipeline, student folder, simple", plain_pipeline(), gold, "baseline"),
        measure("lab `student` (windows, max)", ner_models.STUDENT.tag, gold),
        measure("lab `best` (candidates from spaCy + student + gazetteer, typed by the fitted typer)", ner_models.BEST.tag, gold),
    ]
    if ner_models.BERT.status()[0]:
        rows.append(measure("bert-base-NER (Hub)", ner_models.BERT.tag, gold))
    n_ents = sum(1 for g in gold for e in g["entities"] if e["coarse"] in ner_eval.EVAL_TYPES)
    lines = [f"Gold set: {len(gold)} labelled sentences ({args.split}; {n_ents} PER/ORG/LOC entities), "
             "entity-level exact span + type (seqeval).", "",
             "| tagger | P | R | F1 | F1 PER | F1 ORG | F1 LOC | sentences/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['p']:.3f} | {r['r']:.3f} | **{r['f1']:.3f}** | {r['per']['PER']:.3f} | "
                     f"{r['per']['ORG']:.3f} | {r['per']['LOC']:.3f} | {r['sps']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        out = ROOT / "bench" / "results" / "ner_tagger.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(f"# NER tagger\n\nMachine: 2-core CPU, no GPU, shared with other jobs "
                       f"({platform.processor() or platform.machine()}, torch {torch.__version__}, 2 threads). "
                       "Timings are per sentence, one sentence at a time, and noisy on a shared machine.\n\n"
                       f"{table}\n", encoding="utf-8")
        print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
