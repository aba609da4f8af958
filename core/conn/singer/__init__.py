"""Singer support, both ways: Singer taps and targets as conn connectors (the ``singer``
source and destination plugins) and conn connectors as Singer taps and targets
(``conn singer tap`` and ``conn singer target``).

=================  ========================================================================
module             job
=================  ========================================================================
``protocol``       the wire format: JSON encoding, message lines, RECORD lines ⇄ Arrow
``schema``         a stream's JSON Schema ⇄ an Arrow schema (the type mapping)
``catalog``        reading catalogs and applying Meltano-style metadata overrides
``process``        running a tap or target as a subprocess (argv, private files, logs)
``tap``            a conn source as a Singer tap: its catalog, the stream loop, bookmarks
``target``         Singer messages on stdin as a conn source, run through the sync runner
=================  ========================================================================

Importing this package imports nothing else; each module is imported where it is used.
"""
