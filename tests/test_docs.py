"""The README's set-up commands are the ones CI runs; every command is documented."""

import re
from pathlib import Path

from nrkdeblur.cli import main

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_set_up_commands_and_ci_runs_the_test_one():
    install, test = setup_commands()
    assert "pip install" in install and "nrkdeblur examples/" in install
    assert "pytest" in test
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert test in ci


def test_the_example_photo_in_the_install_command_exists():
    install, _ = setup_commands()
    photo = re.search(r"nrkdeblur (examples/\S+)", install).group(1)
    assert (ROOT / photo).is_file()


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in main.commands:
        assert f"nrkdeblur {name}" in readme or name == "deblur", name
