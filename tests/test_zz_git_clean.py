"""The suite writes only into temporary folders: after it, ``git status`` is as before.

conftest.py records ``git status --porcelain`` when the session starts and runs this
test last. In a fresh clone (CI) the status starts empty, so it must end empty.
"""

import pytest

from .conftest import GIT_STATUS_AT_START, git_status


def test_the_suite_leaves_the_checkout_as_it_found_it(pytestconfig):
    before = pytestconfig.stash.get(GIT_STATUS_AT_START, None)
    if before is None:
        pytest.skip("not a git checkout (or git is not installed)")
    after = git_status()
    new = sorted(after - before)
    assert not new, (
        "the test suite left files in the checkout (tests must write into tmp_path):\n  "
        + "\n  ".join(new)
    )
