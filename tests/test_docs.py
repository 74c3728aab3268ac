"""The README's set-up commands are the ones CI runs, its example leaves the clone clean,
every command is documented, no tracked text narrates how the work was organised, `weights/`
holds only what ships, every run's record lies in `experiments/`, and every path the docs
name exists."""

import json
import re
import shlex
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nrkdeblur.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
INSTALL = "pip install torch==2.13.0 -e . && nrkdeblur examples/"
TEST = "pip install torch==2.13.0 -e '.[test,ray,onnx]' && python -m pytest -q"
# the word is assembled so that this file does not contain it
# whole words only, and not a dotted API key (ONNX Runtime's config entries are named that way)
NARRATION = re.compile(r"(?<![\w.])" + "sess" + r"ions?\b(?!\.\w)", re.IGNORECASE)
WEIGHTS = ROOT / "weights"
EXPERIMENTS = ROOT / "experiments"
CARD_MAX_LINES = 120  # two screens
RUN_FOLDER = re.compile(r"(\d{4}-\d{2}-\d{2})-[a-z0-9]+(-[a-z0-9]+)*")
RECORD = {"run.json", "history.json", "NOTE.md"}
# a repository path written out in the docs, with or without leading ../ (not nrkdeblur/weights/)
NAMED_PATH = re.compile(r"(?<![\w./-])(?:\.\./)*((?:recipes|experiments|weights)/[\w./-]*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".safetensors", ".pt", ".pth"}


def setup_commands() -> list[str]:
    section = README.read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, re.DOTALL)


def test_readme_has_exactly_two_set_up_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "\n" not in install and install.startswith(INSTALL), install
    assert test == TEST
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert test in ci
    assert sum("pytest" in line for line in ci) == 1, ci  # CI runs nothing but the README's tests


def test_the_example_photo_in_the_install_command_exists():
    install, _ = setup_commands()
    photo = re.search(r"nrkdeblur (examples/\S+)", install).group(1)
    assert (ROOT / photo).is_file()


def test_the_example_writes_only_into_a_git_ignored_folder():
    install, _ = setup_commands()
    args = shlex.split(install.split("&&", 1)[1])
    ignored = {line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
               if line.strip().startswith("/") and line.strip().endswith("/")}
    outputs = [args[i + 1] for i, a in enumerate(args) if a in ("-o", "--output", "--defocus-map", "--coefficients")]
    assert any(a in ("-o", "--output") for a in args), "without -o the output lands beside the input"
    for out in outputs:
        assert Path(out).parts[0] in ignored, f"{out} is not under a folder that .gitignore covers"


def test_every_command_is_in_the_readme():
    readme = README.read_text()
    for name in main.commands:
        assert f"nrkdeblur {name}" in readme or name == "deblur", name


def test_readme_stays_short():
    assert len(README.read_text().splitlines()) < 300


def test_no_tracked_text_narrates_how_the_work_was_done():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    offenders = []
    for name in filter(None, files.decode().split("\0")):
        path = ROOT / name
        if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if NARRATION.search(line):  # whole words only: InferenceSession and the like are API names
                offenders.append(f"{name}:{number}: {line.strip()[:80]}")
    assert not offenders, "\n".join(offenders)


def test_the_weights_folder_holds_only_the_weights_the_package_marker_and_the_card():
    entries = [p for p in WEIGHTS.iterdir() if p.name != "__pycache__"]  # ignored, never packaged
    folders = [p.name for p in entries if p.is_dir()]
    assert not folders, f"run records belong in experiments/, not weights/: {folders}"
    names = {p.name for p in entries}
    assert {"__init__.py", "README.md"} <= names
    extra = [n for n in names - {"__init__.py", "README.md"} if not n.endswith(".safetensors")]
    assert not extra, f"weights/ ships only weights files, __init__.py and README.md: {extra}"
    assert any(n.endswith(".safetensors") for n in names)


def test_the_model_card_fits_on_two_screens():
    lines = len((WEIGHTS / "README.md").read_text().splitlines())
    assert lines <= CARD_MAX_LINES, f"weights/README.md has {lines} lines; run history goes to experiments/"


def test_every_run_folder_holds_its_record_is_named_by_its_start_and_is_indexed():
    index = (EXPERIMENTS / "README.md").read_text()
    runs = sorted(p for p in EXPERIMENTS.iterdir() if p.is_dir())
    assert runs
    for run in runs:
        named = RUN_FOLDER.fullmatch(run.name)
        assert named, f"{run.name}: a run folder is named DATE-what-it-tried, lower case"
        files = {p.name for p in run.iterdir()}
        weights = [n for n in files - RECORD if n.endswith(".safetensors")]
        assert RECORD <= files and len(weights) <= 1 and files - RECORD <= set(weights), (run.name, files)
        history = json.loads((run / "history.json").read_text())
        started = datetime.fromtimestamp(min(p["time"] for p in history), timezone.utc).date()
        assert named.group(1) == started.isoformat(), f"{run.name} started on {started} (history.json, UTC)"
        assert f"]({run.name}/NOTE.md)" in index, f"{run.name} is missing from experiments/README.md"


def doc_files() -> list[Path]:
    return [README, WEIGHTS / "README.md", ROOT / "benchmarks" / "README.md",
            *sorted((ROOT / "docs").glob("*.md")), *sorted(EXPERIMENTS.rglob("*.md"))]


def named_paths() -> list[tuple[str, str]]:
    """(doc, repository path) for every path a doc writes out and every relative link it has."""
    found = []
    for doc in doc_files():
        text = doc.read_text()
        for match in NAMED_PATH.finditer(text):
            found.append((doc, match.group(1).rstrip(".,:;")))
        for target in LINK.findall(text):
            if "://" not in target and not target.startswith("#"):
                path = (doc.parent / target.split("#")[0]).resolve()
                found.append((doc, path.relative_to(ROOT).as_posix()))
    return sorted({(doc.relative_to(ROOT).as_posix(), path) for doc, path in found})


def test_every_path_the_docs_name_exists_apart_from_recipes():
    missing = [f"{doc}: {path}" for doc, path in named_paths()
               if not path.startswith("recipes/") and not (ROOT / path).exists()]
    assert not missing, "\n".join(missing)


def test_every_recipe_the_docs_name_exists():
    recipes = [(doc, path) for doc, path in named_paths() if path.startswith("recipes/")]
    assert any(doc == "weights/README.md" for doc, _ in recipes), "the model card names its recipe files"
    missing = [f"{doc}: {path}" for doc, path in recipes if not (ROOT / path).exists()]
    assert not missing, "\n".join(missing)
