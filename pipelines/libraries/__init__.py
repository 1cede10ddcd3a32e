"""The base libraries (gold, schema ``base``), built from silver by declared sources.

First version: ``population`` only, joined on validated keys. Entity resolution
of records without a usable key, conflicts, and the other four libraries are
still to come (issue 4).
"""
