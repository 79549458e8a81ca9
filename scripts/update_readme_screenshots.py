"""Copy each lab's browser-test screenshot (tests/screenshots/<lab>.png, made by the test
suite) into assets/screenshots/ for the README: the top of the page, scaled to 900 px wide.

    bash scripts/run_tests.sh -k browser && python scripts/update_readme_screenshots.py
    python scripts/new_space.py --update-readme     # then refresh the README's table of labs"""
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE, TARGET = ROOT / "tests" / "screenshots", ROOT / "assets" / "screenshots"
WIDTH, MAX_HEIGHT = 900, 1100  # px of the output: enough to show the controls and first results


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for lab in sorted(p.name for p in (ROOT / "spaces").iterdir() if (p / "app.py").exists()):
        shot = SOURCE / f"{lab}.png"
        if not shot.exists():
            print(f"{lab}: no screenshot yet (run its browser test)")
            continue
        image = Image.open(shot).convert("RGB")
        scale = WIDTH / image.width
        image = image.crop((0, 0, image.width, min(image.height, int(MAX_HEIGHT / scale))))
        image = image.resize((WIDTH, int(image.height * scale)), Image.LANCZOS)
        image.save(TARGET / f"{lab}.png", optimize=True)
        print(f"{lab}: {TARGET / f'{lab}.png'} ({image.width}x{image.height})")


if __name__ == "__main__":
    main()
