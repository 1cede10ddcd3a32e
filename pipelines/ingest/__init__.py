"""From a bureau's file to silver: read, standardise on Arrow, classify, load exactly once.

Runs without the JVM: nothing here imports pyspark at module level (tested)."""
