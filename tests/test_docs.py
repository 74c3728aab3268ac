"""The README's set-up commands are the ones CI runs, its example leaves the clone clean,
every command is documented, and no tracked text narrates how the work was organised."""

import re
import shlex
import shutil
import subprocess
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
    assert len(README.read_text().splitlines()) < 310


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
