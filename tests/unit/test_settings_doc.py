"""The README's configuration table is the one `python -m core.settings_doc` generates."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from core.settings_doc import readme_table, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_generated_one() -> None:
    assert readme_table(README.read_text(encoding="utf-8")) == settings_table(), (
        "README.md's configuration table is stale: run `python -m core.settings_doc --write"
        " README.md`"
    )


def test_every_setting_names_its_variable_and_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert isinstance(field.validation_alias, str), name
        assert field.description, name


REFERENCE = README.parent / "docs" / "configuration.md"


def test_configuration_reference_is_the_generated_one() -> None:
    from core.settings_doc import reference

    assert REFERENCE.read_text(encoding="utf-8") == reference(), (
        "docs/configuration.md is stale: run `python -m core.settings_doc --reference"
        " docs/configuration.md`"
    )


def test_every_setting_states_its_type_and_accepted_values() -> None:
    from core.settings import accepted_values, setting_type

    for name in Settings.model_fields:
        assert setting_type(name), name
        assert accepted_values(name), name


def test_every_steward_variable_the_code_names_is_documented() -> None:
    """A `STEWARD_*` name in the code is a setting or listed in OTHER_VARIABLES."""
    import re

    from core.settings_doc import documented_variables

    root = README.parent
    documented = documented_variables()
    prefixes = tuple(name[:-1] for name in documented if name.endswith("*"))
    not_variables = {"STEWARD_VERSION"}  # a Python constant (server.routes.meta)
    files = [
        *root.glob("[!.]*/**/*.py"),
        *root.glob("tests/js/*.mjs"),
        root / "Makefile",
        root / "Dockerfile",
        root / ".ci" / "run",
    ]
    missing: dict[str, str] = {}
    for path in files:
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in re.findall(r"\bSTEWARD_[A-Z0-9_]*[A-Z0-9]\b", text):
            if name in documented or name in not_variables or name.startswith(prefixes):
                continue
            missing.setdefault(name, str(path.relative_to(root)))
    assert not missing, f"undocumented (add to Settings or OTHER_VARIABLES): {missing}"
