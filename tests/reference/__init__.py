"""Reference implementations used only by the tests (never imported by tinygpt)."""
