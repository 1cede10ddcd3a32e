"""The base libraries (gold, schema ``base``), built from silver by the specs in
``schemas/libraries/``: population and legal_person as golden records joined on
validated keys, with entity resolution of quarantined records, cross-bureau
conflicts and history; address, grid, credit_record, credit_rating and
e_licence as derived tables. ``build`` is the entry point.
"""
