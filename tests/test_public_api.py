"""The curated public API: sorted, complete, importable."""

import oncotwin


def test_all_is_sorted_and_resolves() -> None:
    assert oncotwin.__all__ == sorted(oncotwin.__all__)
    for name in oncotwin.__all__:
        assert getattr(oncotwin, name) is not None, name


def test_unknown_attribute_raises() -> None:
    try:
        oncotwin.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
