"""``python -m bench compare OLD NEW``: what changed between two result folders.

:mod:`~bench.compare.folders` loads and checks the two folders, :mod:`~bench.compare.changes`
joins them into a :class:`~bench.compare.changes.Comparison`, :mod:`~bench.compare.tables` turns
that into the sections both outputs show, and :mod:`~bench.compare.page` renders them as HTML.
"""
