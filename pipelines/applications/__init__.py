"""Applications on the base libraries: what departments do with them. Each
reads the libraries (and the rosters bureaus deliver) and writes only its own
records under ``governance/``; none changes a library. ``inspection`` is the
"double random, one public" draw (双随机一公开).
"""
