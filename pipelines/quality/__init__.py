"""Expectation suites and the quality gate every delivery and library build passes."""
