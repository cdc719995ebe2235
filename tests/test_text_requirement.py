"""How the tests that need "The Verdict" find it, and what they say without it: a skip
that tells a user how to supply the text (no path of one machine), or, where the text must
be there (CI: TINYGPT_REQUIRE_TEXT=1, or pytest --require-text), a failure."""

import pytest

from .conftest import HOW_TO_SUPPLY_TEXT, REPO_ROOT, find_verdict_for_tests


class _Config:
    def __init__(self, text=None, require=False):
        self.options = {"--text": text, "--require-text": require}

    def getoption(self, name):
        return self.options[name]


@pytest.fixture
def no_text_anywhere(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGPT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYGPT_REQUIRE_TEXT", raising=False)


def test_without_the_text_a_test_skips_saying_how_to_supply_it(no_text_anywhere):
    with pytest.raises(pytest.skip.Exception) as info:
        find_verdict_for_tests(_Config())
    message = str(info.value)
    assert message == HOW_TO_SUPPLY_TEXT
    for way in ("TINYGPT_DATA", "pytest --text PATH", "needs internet"):
        assert way in message, way
    assert str(REPO_ROOT.parent) not in message and "shared/data" not in message


@pytest.mark.parametrize("how", ["env", "option"])
def test_where_the_text_is_required_its_absence_fails(no_text_anywhere, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("TINYGPT_REQUIRE_TEXT", "1")
    with pytest.raises(pytest.fail.Exception, match="the text is required here"):
        find_verdict_for_tests(_Config(require=how == "option"))


def test_the_text_is_found_through_each_way(no_text_anywhere, monkeypatch, tmp_path,
                                            verdict_path):
    data = verdict_path.read_bytes()
    given = tmp_path / "elsewhere" / "the-verdict.txt"
    given.parent.mkdir()
    given.write_bytes(data)
    assert find_verdict_for_tests(_Config(text=str(given))) == given  # pytest --text
    cached = tmp_path / "cache" / "the-verdict.txt"  # what the one-time download leaves
    cached.parent.mkdir()
    cached.write_bytes(data)
    assert find_verdict_for_tests(_Config()) == cached
    folder = tmp_path / "data" / "the-verdict.txt"  # TINYGPT_DATA, first of the two
    folder.parent.mkdir()
    folder.write_bytes(data)
    assert find_verdict_for_tests(_Config()) == folder


def test_a_wrong_file_is_an_error_not_a_skip(no_text_anywhere, tmp_path):
    wrong = tmp_path / "data" / "the-verdict.txt"
    wrong.parent.mkdir()
    wrong.write_text("not the story\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="is not the book's the-verdict.txt"):
        find_verdict_for_tests(_Config())
