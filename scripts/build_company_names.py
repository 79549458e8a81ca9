"""Build assets/ner_tagger/company_names.json: the companies of 20 major stock indices (S&P 500,
NASDAQ 100, DAX, FTSE 100, CAC 40, NIKKEI 225, ...), full and short names ("Apple Inc." and
"Apple"). The NER lab's `best` tagger keeps a listed company its finder called ORG as ORG, and
gives no person vote to a listed company that is only a US Census surname ("Apple", "Honda").

Source: the `pytickersymbols` 1.17.10 wheel on PyPI (MIT; its data were compiled from Wikipedia's
index lists). Fetched once with `pip download --no-deps`, never installed.

    python scripts/build_company_names.py"""
from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.paths import ASSETS, pypi_file  # noqa: E402

PACKAGE = "pytickersymbols==1.17.10"
MEMBER = "pytickersymbols/indices_data.py"
OUT = ASSETS / "ner_tagger" / "company_names.json"
# Legal-form and share-class endings: "Apple Inc." is called "Apple" in running text, "Ford Motor" "Ford"
# (only the singular: "General Motors" stays whole).
_SUFFIX = re.compile(r"(?:,?\s+(?:Inc\.?|Incorporated|Corporation|Corp\.?|Company|Co\.|plc|PLC|Group|Holdings?|SE|AG|"
                     r"N\.V\.|NV|S\.A\.|SA|Ltd\.?|Limited|REIT|Motor|& Co\.?|Class [A-C]|\(Class [A-C]\)))+$")


def short_name(name: str) -> str:
    return _SUFFIX.sub("", name).strip(" ,")


def main() -> None:
    with zipfile.ZipFile(pypi_file(PACKAGE, "pytickersymbols-1.17.10-*.whl", "--only-binary=:all:")) as zf:
        source = zf.read(MEMBER).decode("utf-8")
    # The module is one literal `INDICES = {...}`: read it as data, never execute it.
    tree = ast.parse(source)
    indices = next(ast.literal_eval(node.value) for node in tree.body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "INDICES")
    names = set()
    for index in indices.values():
        for company in index["companies"]:
            full = company["name"].strip()
            for name in (full, short_name(full)):
                if len(name) >= 2 and any(ch.isupper() for ch in name):
                    names.add(name)
    data = {
        "_about": f"Companies of {len(indices)} stock indices, full and short names, from the pytickersymbols "
                  "1.17.10 wheel (MIT; compiled from Wikipedia). Built by scripts/build_company_names.py.",
        "indices": sorted(indices),
        "names": sorted(names),
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{len(data['names'])} company names from {len(indices)} indices -> {OUT}")


if __name__ == "__main__":
    main()
