"""Developer tooling, apart from the engine: the synthetic city, the demo, benchmarks, evaluation."""
