"""`faceledger models show`: a stored model card is read as a typed card, or refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.cli.common import ExitCode
from faceledger.cli.models import models_app


@pytest.mark.parametrize(
    "text",
    [
        '{"model": {"pack": "default"}}',  # a card missing its figures
        '{"model": {"pack": "default"}, "data": {}, "verification": []}',  # wrong shapes
        "[1, 2]",  # JSON, but not a card
        "{not json",
    ],
)
def test_a_malformed_card_is_one_red_line_not_a_traceback(tmp_path: Path, text: str) -> None:
    cards = tmp_path / "model-cards"
    cards.mkdir()
    (cards / "default.json").write_text(text, encoding="utf-8")
    for extra in ([], ["--json"]):
        out = CliRunner().invoke(
            models_app, ["show", "default", "--cache-dir", str(tmp_path), *extra]
        )
        assert out.exit_code == ExitCode.ERROR, out.output
        assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
        assert "model card" in out.output and "default.json" in out.output
