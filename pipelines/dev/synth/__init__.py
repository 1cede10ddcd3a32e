"""The synthetic city: a Dongguan-like city's bureau exports plus ground truth."""

from pipelines.dev.synth.city import DefectRates, SynthSummary, generate_city

__all__ = ["DefectRates", "SynthSummary", "generate_city"]
