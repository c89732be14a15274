"""Generated documentation stays in step with the code."""

from pathlib import Path

from oncotwin.models.cards import cards

ROOT = Path(__file__).resolve().parents[1]


def test_model_cards_are_current() -> None:
    assert (ROOT / "docs" / "models.md").read_text() == cards(), (
        "run: python -m oncotwin.models.cards > docs/models.md"
    )


def test_readme_links_exist() -> None:
    text = (ROOT / "README.md").read_text()
    for doc in (
        "docs/concepts.md",
        "docs/models.md",
        "docs/data.md",
        "docs/store.md",
        "docs/reports.md",
        "docs/optimize.md",
        "docs/trials.md",
        "docs/service.md",
        "docs/spatial.md",
        "docs/fhir.md",
        "BENCHMARKS.md",
    ):
        assert doc in text
        assert (ROOT / doc).exists()
