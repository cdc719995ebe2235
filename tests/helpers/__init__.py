"""Code the tests share that is not itself a test: assertion helpers, writers of synthetic
GPT-2 files, a local HTTP file server, and worker scripts the tests run in fresh processes."""
