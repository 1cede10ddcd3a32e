"""The governance list (治理清单), the collection list (归集清单) and the reports governors read."""
