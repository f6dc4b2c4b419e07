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
