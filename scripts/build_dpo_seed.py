"""Rebuild assets/dpo_prompts/: the DPO labeler's shipped prompts and its seed preference set.

Source: the English YAML files of chatterbot-corpus 1.3.3 (BSD-3-Clause), fetched with
`pip download --no-deps` into the cache (never installed). Every conversation's first turn is a
question, its second turn the corpus's human-written answer.

    python scripts/build_dpo_seed.py            # prompts.jsonl + seed.jsonl (a second, no model)
    python scripts/build_dpo_seed.py --prompts-only

prompts.jsonl: every distinct question (first letter upper-cased) with its category and answer.
seed.jsonl: SEED_TRAIN + SEED_HELDOUT preference pairs, chosen = the corpus's own answer to the
question, rejected = the corpus's answer to a different question drawn at random from another
category (a fluent, human-written reply that does not answer this question). The split is fixed by
a seeded shuffle; the held-back pairs are never trained on, and their rejected answers come from
held-back questions only.
"""
import argparse
import json
import random
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
from shared.paths import pypi_file  # noqa: E402

TARGET = ROOT / "assets" / "dpo_prompts"
SPEC = "chatterbot-corpus==1.3.3"
SEED_TRAIN, SEED_HELDOUT = 240, 60
SEED = 18


def sentence_case(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:1].upper() + text[1:]


def read_corpus(wheel: Path) -> list[dict]:
    rows, seen = [], set()
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if "/data/english/" in n and n.endswith(".yml")):
            data = yaml.safe_load(z.read(name).decode("utf-8"))
            category = Path(name).stem
            for conv in data.get("conversations") or []:
                if not isinstance(conv, list) or len(conv) < 2:
                    continue
                question, answer = sentence_case(conv[0]), sentence_case(conv[1])
                key = question.lower().rstrip("?.! ")
                if len(question.split()) < 2 or len(answer) < 2 or key in seen:
                    continue
                seen.add(key)
                rows.append({"id": f"cb-{len(rows):04d}", "category": category, "prompt": question, "answer": answer})
    return rows


def build_seed(rows: list[dict]) -> list[dict]:
    # Answers with some substance (not "yes." / a single word), not the corpus's longest speeches.
    pool = [r for r in rows if 12 <= len(r["answer"]) <= 240 and len(r["prompt"]) <= 160]
    rng = random.Random(SEED)
    rng.shuffle(pool)
    picked = pool[:SEED_TRAIN + SEED_HELDOUT]
    out = []
    for i, row in enumerate(picked):
        split = "train" if i < SEED_TRAIN else "heldout"
        # The rejected answer: another question's answer, same split, another category.
        same_split = picked[:SEED_TRAIN] if split == "train" else picked[SEED_TRAIN:]
        other = rng.choice([r for r in same_split if r["category"] != row["category"]])
        out.append({"id": f"seed-{i:03d}", "split": split, "category": row["category"], "prompt": row["prompt"],
                    "chosen": row["answer"], "rejected": other["answer"],
                    "rejected_by": f"the corpus answer to another question ({other['id']}, {other['category']}: "
                                   f"{other['prompt']!r})"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts-only", action="store_true")
    args = parser.parse_args()
    wheel = pypi_file(SPEC, "chatterbot_corpus-*.whl")
    rows = read_corpus(wheel)
    TARGET.mkdir(parents=True, exist_ok=True)
    (TARGET / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    print(f"prompts.jsonl: {len(rows)} questions")
    if not args.prompts_only:
        seed = build_seed(rows)
        (TARGET / "seed.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed), "utf-8")
        print(f"seed.jsonl: {len(seed)} pairs ({SEED_TRAIN} train, {SEED_HELDOUT} held back)")


if __name__ == "__main__":
    main()
