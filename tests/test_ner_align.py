"""ner_align: sub-word BIO labels, windows over long text, and the five aggregation strategies,
checked against transformers' own pipeline on a tiny random BERT with the real MiniLM word-piece
vocabulary. No trained model needed: fast."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

import ner_align  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert():
    """A 2-layer, 32-wide BERT token classifier with random weights and the real uncased vocab."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from shared.embedded import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160, num_labels=len(ner_align.LABELS),
                        id2label=dict(enumerate(ner_align.LABELS)),
                        label2id={l: i for i, l in enumerate(ner_align.LABELS)})
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # make the random tags varied but not uniform
        model.classifier.weight.mul_(40)
    return model, tokenizer


TEXT = "Andre Agassi met Steffi Graf in Las Vegas; Kournikova's coach flew to Tbilisi."


def test_bio_for_pieces_marks_first_piece_b_and_the_rest_i():
    text = "Agassi visited Tbilisi."
    offsets = [(0, 0), (0, 3), (3, 6), (7, 14), (15, 17), (17, 22), (22, 23), (0, 0)]
    ents = [{"start": 0, "end": 6, "coarse": "PER"}, {"start": 15, "end": 22, "coarse": "LOC"}]
    tags = ner_align.bio_for_pieces(offsets, ents, text)
    assert tags == [None, "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", None]


def test_windows_cover_everything_with_overlap():
    assert ner_align.windows(10, window=128) == [(0, 10)]
    spans = ner_align.windows(1000, window=128, stride=32)
    covered = set()
    for s, e in spans:
        assert e - s <= 126
        covered.update(range(s, e))
    assert covered == set(range(1000))
    assert all(spans[i][1] - spans[i + 1][0] == 32 for i in range(len(spans) - 2))


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_aggregation_matches_transformers_pipeline(tiny_bert, strategy):
    from transformers import pipeline

    model, tokenizer = tiny_bert
    ours = ner_align.aggregate(ner_align.classify_pieces(model, tokenizer, TEXT), strategy, tokenizer)
    theirs = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy,
                      device="cpu")(TEXT)
    key = "entity" if strategy == "none" else "entity_group"
    assert [(e[key], e["start"], e["end"], e["word"]) for e in ours] == \
           [(e[key], e["start"], e["end"], e["word"]) for e in theirs]
    for a, b in zip(ours, theirs):
        assert a["score"] == pytest.approx(float(b["score"]), abs=1e-4)


def test_long_text_runs_in_windows_and_keeps_offsets(tiny_bert):
    model, tokenizer = tiny_bert
    text = " ".join([TEXT] * 40)  # ~700 pieces: several windows
    pieces = ner_align.classify_pieces(model, tokenizer, text, window=64, stride=16)
    assert max(p.windows for p in pieces) == 2  # the overlaps were seen twice
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert pieces[-1].end == len(text.rstrip("."))+1 or pieces[-1].end == len(text)
    for e in ner_align.aggregate(pieces, "simple", tokenizer):
        assert 0 <= e["start"] < e["end"] <= len(text)
    whole = ner_align.classify_pieces(model, tokenizer, TEXT, window=512)
    windowed = ner_align.classify_pieces(model, tokenizer, TEXT, window=8, stride=3)
    assert [(p.start, p.end) for p in whole] == [(p.start, p.end) for p in windowed]


def test_unknown_strategy_is_refused(tiny_bert):
    with pytest.raises(ValueError):
        ner_align.aggregate([], "mean")


def test_progress_follows_the_windows(tiny_bert):
    model, tokenizer = tiny_bert
    text = " ".join([TEXT] * 40)
    seen = []
    pieces = ner_align.classify_pieces(model, tokenizer, text, window=64, stride=16, batch_size=4,
                                       progress=lambda done, total: seen.append((done, total)))
    total = len(ner_align.windows(len(pieces), 64, 16))
    assert len(seen) > 2 and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[0][0] < total
