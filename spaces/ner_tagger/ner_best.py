"""The lab's "best" offline tagger: candidate names from spaCy, the student and a gazetteer; general rules
about names (titles, head nouns, whole names, no half brackets); curated lists (gazetteer, US Census names,
listed companies); and a fitted logistic regression (ner_typer) that picks each candidate's type or none.

The taggers it builds on are passed in (ner_models makes them); no model is loaded here."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ner_align import aggregate
from ner_entities import COARSE, HUB_COARSE, ModelInfo, Tagger, entity, has_capital, tidy_span

from shared.loading import once

if TYPE_CHECKING:  # ner_models builds the taggers and imports this module
    from ner_models import SpacyTagger, StudentTagger


def _asset_path(name: str):
    from shared.paths import ASSETS

    return ASSETS / "ner_tagger" / name


def _asset_json(name: str) -> dict:
    """assets/ner_tagger/<name>, or {} when it is missing (the rules then simply get no vote)."""
    import json

    path = _asset_path(name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_gazetteer() -> dict[str, str]:
    """name -> LOC / MISC / ORG from the hand-made assets/ner_tagger/gazetteer.json."""
    def build():
        data = _asset_json("gazetteer.json")
        return {name: label for label in ("LOC", "MISC", "ORG") for name in data.get(label, [])}

    return once(("ner", "gazetteer"), build)


def load_census_names() -> tuple[frozenset, frozenset]:
    """(given names, surnames) from US Census 1990 lists (assets/ner_tagger/census_names.json)."""
    def build():
        data = _asset_json("census_names.json")
        return frozenset(data.get("given", ())), frozenset(data.get("surnames", ()))

    return once(("ner", "census-names"), build)


def load_company_names() -> frozenset:
    """Companies of 20 stock indices, full and short names (assets/ner_tagger/company_names.json)."""
    return once(("ner", "company-names"), lambda: frozenset(_asset_json("company_names.json").get("names", ())))


def looks_like_person(words: list[str], gazetteer: dict) -> bool:
    """'Veronica', 'Slayton', 'Lincoln Burrows': a known given name or surname alone, or a given
    name followed by a known surname or given name. Places in the gazetteer ('Georgia', 'Jordan')
    never count, nor does a listed company that is only a surname ('Apple', 'Honda', 'Siemens')."""
    given, surnames = load_census_names()
    if not words or any(w in gazetteer for w in words):
        return False
    if len(words) == 1:
        return words[0] in given or (words[0] in surnames and words[0] not in load_company_names())
    return words[0] in given and (words[-1] in surnames or words[-1] in given)


# The head noun of a name says its type: 'University of Balochistan' (ORG), 'Academy Award for
# Best Production Design' (MISC), 'Puerto Rico Trench' (LOC). The head is the word before the
# first 'of'/'for', or else the last word.
HEAD_NOUNS = {
    "ORG": """University College Institute Academy Board Court Party Bank Group Committee Council Ministry
        Agency Corporation Corp Company Inc Ltd Association Foundation League Club Federation Commission
        Department Office Army Navy Police Airlines Airways Organization Organisation Society Assembly
        Parliament Congress Senate Government Administration Bureau Authority Press Times Post Journal Fund
        Corps Force Forces Guard Church School Schools Network Brothers Bros Holdings Partners Associates Industries
        Enterprises Motors Systems Technologies Communications Records Recordings Magazine Studios Pictures
        Entertainment Media Labs Laboratories Pharmaceuticals Securities Investments Insurance Telecom News Gazette
        Herald Tribune Telegraph Chronicle Observer Mail Express Mirror Guardian Broadcasting Television""",
    "MISC": """Award Awards Prize Medal Cup Championship Championships Olympics Games Festival Index Crisis War
        Wars Act Treaty Declaration Constitution Accord Revolution Fair Expo Exhibition Tournament Marathon Summit""",
    "LOC": """River Mountains Mountain Lake Ocean Sea Island Islands Province District County Valley Desert Bay
        Gulf Peninsula Street Avenue Airport Bridge Square Republic Kingdom Empire Trench Strait Canal Park
        Mount Forest Coast Range Hills Plain Plains Peak Harbor Harbour Cape Glacier Reef Basin Plateau Mosque
        Cathedral Temple Stadium Arena Palace Castle Tower Station Beach Canyon Road Boulevard Highway Falls""",
}
_HEAD_TYPE = {w: t for t, words in HEAD_NOUNS.items() for w in words.split()}


def head_type(words: list[str]) -> str | None:
    for i, w in enumerate(words):
        if w in ("of", "for") and i:
            return _HEAD_TYPE.get(words[i - 1])
    return _HEAD_TYPE.get(words[-1]) if words else None


_NAME_PARTICLES = {"bin", "al", "de", "van", "von", "der", "da", "di", "la", "le", "du", "del", "dos", "das", "ibn",
                   "el", "y"}
_PARTICLES = _NAME_PARTICLES | {"of", "and", "for", "the"}


def strip_trailing_lowercase(text: str, start: int, end: int) -> tuple[int, int]:
    """'Hunan province' -> 'Hunan', 'University of Balochistan and' -> 'University of Balochistan': a name
    does not end in a common lowercase word (a name particle like 'bin' or 'van' stays)."""
    while True:
        span = text[start:end]
        m = re.search(r"\s+([a-z][a-z\-]*)$", span)
        if not m or not has_capital(span[:m.start()]) or m.group(1) in _NAME_PARTICLES:
            return start, end
        end = start + m.start()


# A person's name is written without the title before it ('Mr Reid', 'Prince Harry', 'Spokeswoman Anne
# Stringer' -> the name alone) or the post-nominal after it ('Ross Ray QC'), as the CoNLL guidelines say.
_TITLES = set("""Mr Mrs Ms Miss Mx Dr Prof Professor Sir Dame Lord President Vice Prime Minister Premier Chancellor
    Senator Sen Rep Representative Congressman Congresswoman Governor Gov Mayor General Gen Colonel Col Major Maj
    Captain Capt Lieutenant Lt Sergeant Sgt Admiral Adm Commander Judge Justice King Queen Prince Princess Pope
    Emperor Empress Sheikh Rev Reverend Father Fr Bishop Archbishop Cardinal Rabbi Imam Ayatollah Spokesman
    Spokeswoman Spokesperson Chairman Chairwoman Chief Coach Detective Inspector Constable Superintendent Deputy
    Secretary Ambassador""".split())
_POST_NOMINALS = {"QC", "KC", "SC", "MP", "MLA", "MLC", "MEP", "PhD"}
# The titles that can also follow the organisation a person speaks or works for ('State Department Spokesperson').
_ROLES = {"Spokesman", "Spokeswoman", "Spokesperson", "Chairman", "Chairwoman", "Administrator", "Director",
          "Minister", "Secretary", "President", "Governor", "Commissioner", "Ambassador", "Chief", "Editor",
          "Correspondent"}


def strip_title(text: str, start: int, end: int) -> tuple[int, int]:
    """'Mr Reid' -> 'Reid', 'Vice President Al Gore' -> 'Al Gore', 'Ross Ray QC' -> 'Ross Ray'; a span
    that would be left without a capitalised word stays as it is."""
    while True:
        m = re.match(r"([A-Z][a-z]*)\.?\s+(?=[A-Z])", text[start:end])
        if not m or m.group(1) not in _TITLES:
            break
        start += m.end()
    m = re.search(r"\s+([A-Za-z]+)\.?$", text[start:end])
    if m and m.group(1) in _POST_NOMINALS and has_capital(text[start:start + m.start()]):
        end = start + m.start()
    return start, end


def cut_open_bracket(text: str, start: int, end: int) -> tuple[int, int]:
    """'Organisation of the Islamic Conference (OIC' -> 'Organisation of the Islamic Conference': a name
    does not hold half of a bracket pair."""
    span = text[start:end]
    i = span.find("(")
    if i > 0 and ")" not in span[i:]:
        end = start + i
    j = span.rfind(")")
    if j >= 0 and "(" not in span[:j] and j + 1 < len(span):
        start += j + 1
    return start, end


def strip_leading_lowercase(text: str, start: int, end: int) -> tuple[int, int]:
    """'west Japan' -> 'Japan', 'née Brende Mendelssohn' -> 'Brende Mendelssohn': a name does not start with
    a common lowercase word (a name particle like 'de' or 'van' stays)."""
    while True:
        m = re.match(r"([^\W\d_][\w\-]*)\s+(?=\S)", text[start:end])
        if not m or not m.group(1).islower() or m.group(1) in _NAME_PARTICLES or \
                not has_capital(text[start + m.end():end]):
            return start, end
        start += m.end()


def strip_trailing_role(text: str, start: int, end: int) -> tuple[int, int]:
    """'State Department Spokesperson' -> 'State Department', 'NASA Administrator' -> 'NASA': an organisation or
    place does not end in the title of someone who works for it."""
    m = re.search(r"\s+([A-Z][a-z]+)$", text[start:end])
    if m and m.group(1) in _ROLES and has_capital(text[start:start + m.start()]):
        end = start + m.start()
    return start, end


def name_span(text: str, start: int, end: int, coarse: str) -> tuple[int, int]:
    """A finder's span shrunk to the name: tidy_span, no half bracket, no leading or trailing common word, no
    match score after it, for a person no title, and for anything else no trailing role."""
    start, end = cut_open_bracket(text, *tidy_span(text, start, end))
    start, end = strip_leading_lowercase(text, *tidy_span(text, start, end))
    start, end = strip_trailing_lowercase(text, start, end)
    score = re.search(r"\s+\d{1,2}[-\u2013]\d{1,2}$", text[start:end])  # 'Chelsea 2-1': a result, not part of the name
    if score and has_capital(text[start:start + score.start()]):
        end = start + score.start()
    if coarse == "PER":
        start, end = strip_title(text, start, end)
    else:
        start, end = strip_trailing_role(text, start, end)
    return tidy_span(text, start, end)


# 'Hurricane Ian', 'Cyclone Idai', 'Tropical Storm Alberto': the candidate ends the text searched, so the storm word
# is its first word or the word right before it.
_STORM = re.compile(r"\b(?:Hurricane|Cyclone|Typhoon|Superstorm|Storm)\s+[A-Z][^\s]*(?:\s+[A-Z][^\s]*)?$")

# Capitalised common nouns that refer to an institution without naming it ("the Government", "our Nation",
# "all our States"): never a name alone, as in the CoNLL guidelines and every split of the gold set.
_GENERIC_NOUNS = {"Government", "Federal Government", "Nation", "State", "States", "Administration", "Chamber"}

_HEAD_OF = re.compile(r"((?:[A-Z][\w'\-]*\s+){0,2}([A-Z][\w'\-]*))\s+of\s+(?:the\s+)?$")
_SENTENCE_WORDS = re.compile(r"(?:(?:The|A|An|In|On|At|By|For|From|To|With|And|Of|As|But|If)\s+)*")


# Common nouns that say what a name next to them is: 'the cryptocurrency exchange FTX', 'Klarna, the
# Stockholm-based lender', 'Kenyan runner Faith Kipyegon', 'Ethiopia's Tigray region', 'the town of Handlova'.
DESCRIPTORS = {
    "ORG": """company companies firm group bank lender insurer carrier airline retailer maker manufacturer producer
        operator exchange broker publisher publication newspaper magazine broadcaster channel network agency party
        club team band label studio startup start-up giant conglomerate chain provider developer supplier
        organisation organization charity movement militia outlet""",
    "PER": """runner rider striker midfielder defender goalkeeper captain player actor actress singer rapper
        songwriter director producer author writer novelist poet artist painter billionaire founder cofounder
        co-founder businessman businesswoman entrepreneur investor journalist reporter scientist researcher
        lawyer suspect victim driver boxer golfer cyclist pitcher quarterback batsman bowler coach leader""",
    "LOC": """region province city town village valley river district county island prefecture municipality
        neighbourhood neighborhood suburb desert peninsula volcano""",
}
# 'producer' is on two lists: a company before it is a person (the first list wins)
_DESCRIBES = {w: t for t, words in reversed(DESCRIPTORS.items()) for w in words.split()}


def _describes(word: str) -> str | None:
    if word.endswith("maker") and len(word) > 5:  # carmaker, chipmaker, drugmaker
        return "ORG"
    return _DESCRIBES.get(word)


def described_as(text: str, start: int, end: int) -> str | None:
    """The type a common noun right next to a name gives it: before it ('the exchange FTX', 'runner Faith
    Kipyegon'), in an apposition after it ('Klarna, the Stockholm-based lender,'), or for a place after it
    ('Tigray region') or before it with 'of' ('the town of Handlova')."""
    before = re.search(r"([a-z][a-z\-]*)(\s+of)?\s+$", text[max(0, start - 40):start])
    if before:
        kind = _describes(before.group(1))
        if kind and (kind == "LOC") == bool(before.group(2)):
            return kind
    after = text[end:end + 80]
    m = re.match(r"\s+([a-z]+)\b", after)
    if m and _describes(m.group(1)) == "LOC":
        return "LOC"
    m = re.match(r",\s+(?:the|a|an)\s+([^,.;:()]{0,60})", after)
    if m:  # the apposition's head noun: its last word before a verb or a function word ('..lender based in')
        words = re.split(r"\s+(?:led|based|founded|owned|controlled|run|headed|known|that|which|who|whose|with|in|of|"
                         r"since|for|from|at|on|and)\b", m.group(1))[0].split()
        kind = _describes(words[-1]) if words and re.fullmatch(r"[a-z][a-z\-]*", words[-1]) else None
        if kind in ("ORG", "PER"):
            return kind
    return None


def extend_head_of(text: str, start: int) -> int:
    """'Gulf of [Maine]' -> 'Gulf of Maine', 'Treaty of [Versailles]' -> 'Treaty of Versailles': when a name
    follows '<head noun> of', the head noun and the capitalised words just before it belong to it (not a
    sentence's first word such as 'In'). Returns the new start."""
    before = text[max(0, start - 80):start]
    m = _HEAD_OF.search(before)
    if not m or m.group(2) not in _HEAD_TYPE:
        return start
    new_start = start - len(before) + m.start(1)
    return _SENTENCE_WORDS.match(text, new_start).end()


def split_at_separators(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """'Goa, Panaji', 'British Airways / American', 'FEATURE - Singapore' -> two names. A name holds no
    semicolon, no slash, bar or dash with spaces around it ('Dallas-Fort Worth' keeps its hyphen), and no comma
    unless an abbreviation follows ('Washington, D.C.', 'Acme, Inc.', 'Martin Luther King, Jr.')."""
    parts, cut = [], start
    for m in re.finditer(r",\s+|;\s+|\s+[/|\-\u2013\u2014]\s+", text[start:end]):
        rest = text[start + m.end():end]
        if m.group()[0] == "," and re.match(r"(?:[A-Z]\.)+|(?:Inc|Ltd|Jr|Sr|Co|Corp|LLC|plc)\b", rest):
            continue
        parts.append((cut, start + m.start()))
        cut = start + m.end()
    return parts + [(cut, end)]


def whole_name(text: str, span: tuple[int, int], groups: list[tuple[int, int]]) -> tuple[int, int]:
    """spaCy's 'Bahru' inside the student's 'Johor Bahru' (or 'Kim' and 'Hoon' inside 'Kim Do Hoon'): a
    name found in part by one finder and whole by the other is the whole name, when the words it adds are
    capitalised name words (no title, no listed place or nationality)."""
    start, end = span
    gazetteer = load_gazetteer()
    for g_start, g_end in groups:
        if g_start <= start and end <= g_end and (g_start, g_end) != (start, end):
            extra = (text[g_start:start] + " " + text[end:g_end]).split()
            if all(w[:1].isupper() and w.strip(".,") not in _TITLES and w not in gazetteer for w in extra):
                return g_start, g_end
    return span


def join_connected(text: str, groups: list[dict]) -> list[dict]:
    """The student tags 'Gulf of Saint Lawrence' as B I B I: two groups, 'Gulf of' and 'Saint Lawrence'.
    A group that ends in a connector ('of', 'and', 'de'...) is joined to the group right after it, which
    takes the first group's type; a name never ends in a connector."""
    out: list[dict] = []
    for g in groups:
        prev = out[-1] if out else None
        if prev and text[prev["end"]:g["start"]].isspace() and \
                text[prev["start"]:prev["end"]].split()[-1] in _PARTICLES:
            out[-1] = dict(prev, end=g["end"], word=text[prev["start"]:g["end"]])
        else:
            out.append(g)
    return out


def _type_mass(pieces, start: int, end: int) -> dict[str, float]:
    """Mean probability mass per coarse type (B-X + I-X) and of O over the pieces inside a span."""
    inside = [p for p in pieces if p.start >= start and p.end <= end]
    if not inside:
        return {}
    id2label = inside[0]._id2label
    mass: dict[str, float] = {}
    for p in inside:
        for i, prob in enumerate(p.scores):
            tag = id2label[i]
            key = tag.split("-", 1)[-1]
            mass[key] = mass.get(key, 0.0) + float(prob) / len(inside)
    return mass


def typer_path():
    return _asset_path("best_typer.json")


def load_typer():
    """The fitted typer (scripts/train_ner_best.py), or None when its file is missing."""
    from ner_typer import Typer

    return once(("ner", "typer"), lambda: Typer.load(typer_path()))


_WORD = re.compile(r"[A-Za-z]+")
_SOURCE_NAME = {"spacy": "spaCy", "student": "student", "gazetteer": "gazetteer"}
_WHY = {"census": "census name", "after_the": "after 'the'", "poss": "possessive 's", "allcaps": "all capitals",
        "digit": "has a digit"}


def why_text(name: str) -> str:
    """'sp=ORG' -> "spaCy label ORG", 'mass_PER' -> "student leans PER", 'prev=in' -> "after 'in'"."""
    kind, _, value = name.partition("=")
    if value:
        return {"sp": f"spaCy label {value}", "student": f"student found {value}",
                "gazetteer": f"gazetteer {value}", "prev": f"after '{value}'", "next": f"before '{value}'",
                "src": f"found by {_SOURCE_NAME.get(value, value)}",
                "nw": f"{value} word(s)"}.get(kind, name)
    if name in _WHY:
        return _WHY[name]
    for prefix, say in (("mass_", "student leans {}"), ("gaz_", "gazetteer {}"), ("head_", "head noun {}"),
                        ("desc_", "described as {}")):
        if name.startswith(prefix):
            return say.format(name[len(prefix):])
    return name


class BestTagger(Tagger):
    """The lab's best offline tagger. Candidates: spaCy's spans (tidied), then spans only the student
    finds, then gazetteer names. A small logistic regression (ner_typer, fitted on the gold set's dev,
    fresh, wiki and business splits by scripts/train_ner_best.py) starts from the type the finder
    proposed, reads the candidate's evidence and keeps, changes or drops it. A few knowledge rules overrule
    it: a curated list and one more source agreeing, a place followed by its state ('Irving, Texas'), a
    named storm. Then one name = one type within a text, and an acronym in brackets takes the type of the
    name it abbreviates."""
    key = "best"
    info = ModelInfo("best", "ensemble", "PER / ORG / LOC / MISC",
                     "Offline ensemble: candidate names from spaCy (tidied: no articles, possessives or trailing "
                     "common nouns), the student and a gazetteer; each one's type, or no entity, chosen by a "
                     "logistic regression that starts from the finder's type and weighs the evidence (spaCy's "
                     "label, the student's probabilities, the gazetteer, US Census names, the head noun, a "
                     "noun that describes it, the words around it), fitted on "
                     "hand-labelled sentences; then name consistency within the text. The entity table says why.")

    def __init__(self, spacy_tagger: SpacyTagger, student: StudentTagger):
        self.spacy, self.student = spacy_tagger, student

    def status(self):
        ok, why = self.student.status()
        parts = [] if ok else [f"student {why}"]
        if load_typer() is None:
            parts.append("typer missing: run scripts/train_ner_best.py; spaCy's types used")
        return True, "offline" + (f" ({'; '.join(parts)})" if parts else "")

    def tag(self, text: str, pieces=None, doc=None, progress=None) -> list[dict]:
        """Entities of `text`. `pieces` (the student's) and `doc` (spaCy's) are computed here unless
        given (a caller running those models anyway passes them: same result, each model run once);
        progress(done, total) follows the candidates typed."""
        if not text.strip():
            return []
        if pieces is None and self.student.status()[0]:
            pieces = self.student.pieces(text)
        typer = load_typer()
        cands = self.candidates(text, pieces, doc)
        typed = []
        for i, cand in enumerate(cands):
            typed.append((cand, None if typer is None else self.features(text, cand, pieces)))
            if progress is not None and (i % 50 == 49 or i == len(cands) - 1):
                progress(i + 1, len(cands))
        return self.decide(text, typed, typer)

    @classmethod
    def decide(cls, text: str, typed: list[tuple[dict, dict | None]], typer) -> list[dict]:
        """Entities from (candidate, features) pairs: the typer's type (or the finder's when there is no
        typer) unless a knowledge rule overrules it, candidates typed O dropped, then one name = one type
        within the text. The fitting
        script scores its variants through here too, so what it measures is what the lab does."""
        out = []
        for cand, feats in typed:
            proposed = cls.proposed(cand)
            if typer is None:
                coarse, prob, why = proposed, None, ""
            else:
                coarse, prob = typer.predict(feats, proposed)
                why = ", ".join(f"{_SOURCE_NAME[cand['source']]} proposed {proposed}" if n == "proposed"
                                else why_text(n) for n, _ in typer.why(feats, coarse, proposed))
                span = text[cand["start"]:cand["end"]]
                listed = cls.listed_type(span)
                if listed and coarse != listed[0]:
                    # A curated list and one more independent source agree (the finder, or the student when
                    # spaCy found the name): the typer, fitted on a few hundred names, does not overrule two
                    # ("East Timor's" is no person, "Airbus" no MISC, "Tesla would open a factory" no person).
                    # An organisation the gazetteer names needs no second source: unlike its places
                    # ("Georgia", "Victoria") and the listed companies ("Ford"), none is also a person's name.
                    if load_gazetteer().get(span) == "ORG":
                        backer = "an organisation named on its own"
                    elif cand["source"] == "gazetteer":  # the list cannot be its own second source
                        backer = None
                    else:
                        student_says = cls.student_leaning(feats) if cand["source"] == "spacy" else None
                        backer = (f"{_SOURCE_NAME[cand['source']]} agrees" if proposed == listed[0] else
                                  "student agrees" if student_says == listed[0] else None)
                    if backer:
                        coarse, prob, why = listed[0], None, f"{listed[1]}, {backer} (typer said {coarse})"
            if proposed == "LOC" and coarse == "PER":
                region = cls.region_after(text, cand["end"])
                if region:
                    # 'Irving, Texas', 'Florence, Italy': a place its finder saw, followed by the state or country
                    # it lies in, is that place, whatever a census list says of the word.
                    coarse, prob, why = "LOC", None, f"followed by ', {region}', {_SOURCE_NAME[cand['source']]} agrees"
            if coarse in ("PER", "ORG") and _STORM.search(text[max(0, cand["start"] - 30):cand["end"]]):
                # 'Hurricane Ian', 'Typhoon Haiyan': a storm's name is no person or organisation (an event: MISC;
                # a place such as 'Hurricane Alley' stays)
                coarse, prob, why = "MISC", None, "a named storm"
            if coarse == "O":
                continue
            e = entity(text, cand["start"], cand["end"], cand["label"], coarse, prob)
            if why:
                e["why"] = why
            out.append(e)
        final = cls._acronyms_in_brackets(text, cls._consistent_names(text, out))
        for e in final:
            found_as = COARSE.get(e["label"]) or HUB_COARSE.get(e["label"])
            if found_as and found_as != e["coarse"]:
                # best's own label is the type it chose ("Olaf Scholz": spaCy ORG, best PER); an API user reading
                # "label" must not get the finder's overruled one. Its reason keeps it.
                e["why"] = "; ".join(filter(None, [e.get("why", ""), f"found as {e['label']}"]))
                e["label"] = e["coarse"]
        return sorted(final, key=lambda e: e["start"])

    @staticmethod
    def region_after(text: str, end: int) -> str | None:
        """The gazetteer place right after a comma that follows a name ('Irving[, Texas]'), or None."""
        m = re.match(r",\s+((?:[A-Z][\w.\-]*\s?){1,4})", text[end:end + 60])
        if not m:
            return None
        words = m.group(1).split()
        gazetteer = load_gazetteer()
        for n in range(len(words), 0, -1):
            name = " ".join(words[:n])
            if gazetteer.get(name) == "LOC" and not re.match(r"\w", text[end + m.start(1) + len(name):][:1]):
                return name
        return None

    @staticmethod
    def student_leaning(feats: dict) -> str | None:
        """The entity type the student gives most probability to over the span (None without the student)."""
        mass = {t: feats.get(f"mass_{t}", 0.0) for t in ("PER", "ORG", "LOC", "MISC")}
        return max(mass, key=mass.get) if any(mass.values()) else None

    @staticmethod
    def listed_type(span: str) -> tuple[str, str] | None:
        """(type, why) of a name on a curated list: the gazetteer (places, nationalities, organisations named
        on their own) or the listed companies."""
        gazetteer = load_gazetteer()
        if span in gazetteer:
            return gazetteer[span], f"gazetteer {gazetteer[span]}"
        if span in load_company_names():
            return "ORG", "listed company"
        return None

    @staticmethod
    def proposed(cand: dict) -> str:
        """The coarse type the candidate's finder gave it."""
        return COARSE[cand["label"]] if cand["source"] == "spacy" else cand["label"]

    def candidates(self, text: str, pieces=None, doc=None) -> list[dict]:
        """Non-overlapping spans {"start", "end", "source", "label"}: spaCy's first, then the student's,
        then the gazetteer's. In cased text a span without a capital letter is no name. `doc` is spaCy's
        Doc of `text` when the caller has it already."""
        cased = has_capital(text)
        out: list[dict] = []

        def add(start, end, source, label):
            if end <= start or (cased and not has_capital(text[start:end])) or text[start:end] in _GENERIC_NOUNS:
                return
            if text[end:end + 1] == "$":  # 'US$ 20,000', 'A$5': a currency, not the country
                return
            longer = extend_head_of(text, start)
            if not any(longer < c["end"] and c["start"] < end for c in out):  # not over a name found before
                start = longer
            if not any(start < c["end"] and c["start"] < end for c in out):
                out.append({"start": start, "end": end, "source": source, "label": label})

        groups = []  # the student's names: (start, end, type)
        if pieces:
            groups = [(*name_span(text, g["start"], g["end"], g["entity_group"]), g["entity_group"])
                      for g in join_connected(text, aggregate(pieces, "first", self.student.load()[1]))]
        student_spans = [(start, end) for start, end, _ in groups]
        for ent in (doc if doc is not None else self.spacy.doc(text)).ents:
            if COARSE.get(ent.label_):  # not dates, numbers, money
                for start, end in split_at_separators(text, ent.start_char, ent.end_char):
                    span = name_span(text, start, end, COARSE[ent.label_])
                    add(*whole_name(text, span, student_spans), "spacy", ent.label_)
        for start, end, label in groups:
            if text[start:end].rstrip(".") not in _TITLES:  # a title the student split off a name ("Fr" Sousa)
                add(start, end, "student", label)
        gazetteer = load_gazetteer()
        if gazetteer and cased:
            pattern = once(("ner", "gazetteer-re"), lambda: re.compile(
                r"(?<![\w.])(?:" + "|".join(re.escape(n) for n in sorted(gazetteer, key=len, reverse=True)) +
                r")(?!\w)"))
            for m in pattern.finditer(text):
                add(m.start(), m.end(), "gazetteer", gazetteer[m.group()])
        return out

    @staticmethod
    def features(text: str, cand: dict, pieces=None) -> dict[str, float]:
        """A candidate's evidence, by readable names (see why_text)."""
        start, end, source = cand["start"], cand["end"], cand["source"]
        span = text[start:end]
        words = span.split()
        f: dict[str, float] = {f"src={source}": 1.0}
        f[f"{'sp' if source == 'spacy' else source}={cand['label']}"] = 1.0
        mass = _type_mass(pieces, start, end) if pieces else {}
        for t in ("O", "PER", "ORG", "LOC", "MISC"):
            if mass.get(t):
                f[f"mass_{t}"] = mass[t]
        gazetteer = load_gazetteer()
        if span in gazetteer and gazetteer[span] != "ORG":  # listed organisations act through decide() only:
            f[f"gaz_{gazetteer[span]}"] = 1.0                 # too few in the gold set to weigh as a feature
        if looks_like_person(words, gazetteer):
            f["census"] = 1.0
        head = head_type(words)
        if head:
            f[f"head_{head}"] = 1.0
        described = described_as(text, start, end)
        if described:
            f[f"desc_{described}"] = 1.0
        f[f"nw={min(len(words), 3)}"] = 1.0
        if len(span) > 1 and span.isupper():
            f["allcaps"] = 1.0
        if any(ch.isdigit() for ch in span):
            f["digit"] = 1.0
        if re.search(r"\bthe\s+$", text[max(0, start - 5):start], re.I):
            f["after_the"] = 1.0
        before = _WORD.findall(text[max(0, start - 40):start])[-1:]
        after = _WORD.findall(text[end:end + 40])[:1]
        if before:
            f[f"prev={before[0].lower()}"] = 1.0
        if after:
            f[f"next={after[0].lower()}"] = 1.0
        if re.match(r"\s*['\u2019]s\b", text[end:end + 4]):
            f["poss"] = 1.0
        return f

    @staticmethod
    def _acronyms_in_brackets(text, out):
        """'Organisation of the Islamic Conference (OIC)', 'Bharatiya Janata Party (BJP)': an acronym in
        brackets right after an organisation or place, whose letters are that name's initials in order,
        names the same thing and takes its type (the uncased student cannot read acronyms)."""
        added = []
        for e in out:
            if e["coarse"] not in ("ORG", "LOC"):
                continue
            m = re.match(r"\s*\(([A-Z][A-Z&.]{1,7})\)", text[e["end"]:e["end"] + 12])
            if not m:
                continue
            start, end = e["end"] + m.start(1), e["end"] + m.end(1)
            letters = iter(w[0].upper() for w in re.findall(r"[A-Za-z][\w'\-]*", e["text"]))
            if all(ch in letters for ch in m.group(1).replace(".", "").replace("&", "")) and \
                    not any(start < x["end"] and x["start"] < end for x in out):
                acronym = entity(text, start, end, "acronym", e["coarse"])
                acronym["why"] = f"the initials of {e['text']!r}"
                added.append(acronym)
        return out + added

    @staticmethod
    def _consistent_names(text, out):
        """A word that is part of a full person name elsewhere in the text is that person."""
        parts = set()
        for e in out:
            words = e["text"].split()
            if e["coarse"] == "PER" and len(words) >= 2:
                parts.update(w for w in words if len(w) > 2 and w[0].isupper() and w.lower() not in _PARTICLES)
        if not parts:
            return out
        fixed = []
        for e in out:
            if e["coarse"] != "PER" and e["text"] in parts:
                e = dict(e, coarse="PER")
            fixed.append(e)
        for m in re.finditer(r"\b[A-Z][\w'\-]+\b", text):
            if m.group() in parts and not any(m.start() < e["end"] and e["start"] < m.end() for e in fixed):
                fixed.append(entity(text, m.start(), m.end(), "name-consistency", "PER"))
        return fixed
