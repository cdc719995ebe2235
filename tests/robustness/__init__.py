"""Tests by threat: hostile inputs, files, paths and runs, the fuzzers' quick runs, and
torch's errors where torch errs. Each test is named for the failure it guards against."""
