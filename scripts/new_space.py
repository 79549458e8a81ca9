"""Scaffold a new lab that passes the test suite the moment it exists.

    python scripts/new_space.py my_lab [--title "My Lab"] [--emoji 🔬] [--description "..."]

Creates, from scripts/templates/:
    spaces/<name>/app.py           the house structure (UI only, build_demo(), named API endpoint)
    spaces/<name>/<name>_logic.py  plain-Python logic (a small real example: softmax with temperature)
    spaces/<name>/README.md        the Space card (YAML front matter) with an API section
    tests/test_<name>.py           logic, bad input, API through gradio_client, one browser test
    bench/<name>.py                the lab's figure next to a plain-library baseline
and refreshes the table of labs in README.md between <!-- labs:start --> and <!-- labs:end -->
(nothing else in README.md is touched). The all-labs server (scripts/serve_all.py) and
deploy_space.py find the new lab by themselves.

    python scripts/new_space.py --update-readme   # only regenerate the README table"""
from __future__ import annotations

import argparse
import keyword
import sys
from pathlib import Path

import labkit

ROOT = labkit.ROOT
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_TEACHES = ("How temperature reshapes a next-token distribution: softmax of the scores divided "
                   "by the temperature, and the entropy of the result.")


def targets(name: str, root: Path) -> dict[str, Path]:
    return {
        "app.py.tmpl": root / "spaces" / name / "app.py",
        "logic.py.tmpl": root / "spaces" / name / f"{name}_logic.py",
        "README.md.tmpl": root / "spaces" / name / "README.md",
        "test.py.tmpl": root / "tests" / f"test_{name}.py",
        "bench.py.tmpl": root / "bench" / f"{name}.py",
    }


def check_name(name: str, root: Path) -> None:
    if not labkit.NAME_RE.match(name) or keyword.iskeyword(name):
        raise labkit.LabError(f"'{name}' is not a valid lab name: use lower_snake_case letters, digits and "
                              "underscores, starting with a letter (2-41 characters), e.g. 'prompt_lab'.")
    if (root / "spaces" / name).exists():
        raise labkit.LabError(f"spaces/{name} already exists: choose another name.")
    taken = [p for p in targets(name, root).values() if p.exists()]
    if taken:
        raise labkit.LabError(f"{', '.join(str(p.relative_to(root)) for p in taken)} already exist(s): "
                              "choose another name.")
    module = f"{name}_logic.py"
    clash = [p for p in (root / "spaces").glob(f"*/{module}")] if (root / "spaces").is_dir() else []
    if clash:
        raise labkit.LabError(f"A module named {module} already exists ({clash[0].relative_to(root)}); module "
                              "names must be unique across labs.")


def yaml_scalar(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def render(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def scaffold(name: str, root: Path = ROOT, title: str | None = None, emoji: str = "🧪",
             description: str | None = None, teaches: str = DEFAULT_TEACHES) -> list[Path]:
    check_name(name, root)
    title = title or name.replace("_", " ").title()
    description = description or "Scaffolded lab: softmax with temperature"
    if len(description) > 60:
        raise labkit.LabError(f"--description must be at most 60 characters (the Hub's limit); got {len(description)}.")
    for label, text in (("--title", title), ("--emoji", emoji), ("--description", description)):
        if any(c in text for c in '"\\\n{}'):
            raise labkit.LabError(f"{label} must not contain quotes, backslashes, braces or line breaks.")
    gradio = labkit.pinned_version("gradio", root) or "6.31.0"
    values = {"lab": name, "title": title, "emoji": emoji, "teaches": teaches,
              "short_description": yaml_scalar(description), "gradio_version": gradio,
              "title_yaml": yaml_scalar(title), "emoji_yaml": yaml_scalar(emoji)}
    written = []
    for template, target in targets(name, root).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render((TEMPLATES / template).read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(target)
    return written


def update_readme(root: Path = ROOT) -> str:
    readme = root / "README.md"
    if labkit.update_readme_table(readme, labkit.discover(root), root):
        return f"README.md: table of labs refreshed between {labkit.TABLE_START} and {labkit.TABLE_END}."
    return (f"README.md has no {labkit.TABLE_START} ... {labkit.TABLE_END} markers, so it was left alone; "
            "the table of labs would be:\n\n" + labkit.labs_table(labkit.discover(root), root))


def main(argv=None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description="Scaffold a new lab.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="lab folder name, lower_snake_case")
    parser.add_argument("--title", help="display title (default: from the name)")
    parser.add_argument("--emoji", default="🧪")
    parser.add_argument("--description", help="short description, at most 60 characters")
    parser.add_argument("--update-readme", action="store_true", help="only regenerate README.md's table of labs")
    args = parser.parse_args(argv)
    if args.update_readme:
        print(update_readme(root))
        return 0
    if not args.name:
        parser.error("give the new lab's name, e.g.  python scripts/new_space.py prompt_lab")
    try:
        written = scaffold(args.name, root, args.title, args.emoji, args.description)
    except labkit.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"created {path.relative_to(root)}")
    print(update_readme(root))
    print(f"\nNext:\n  python -m pytest -q tests/test_{args.name}.py     # passes as scaffolded\n"
          f"  python spaces/{args.name}/app.py                     # try it\n"
          f"  python scripts/serve_all.py                           # it is in the all-labs index too\n"
          f"  python scripts/deploy_space.py {args.name} --dry-run   # the Space bundle, in out/spaces/{args.name}\n"
          f"Then replace the example logic, keep the README card (title, short_description, models, assets) "
          f"true, and record bench/{args.name}.py's table in bench/results/{args.name}.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
