"""The study: its settings (schema, overlays, axes), its cells, its generated pipeline and its chosen learning rates.

Nothing here trains or tracks; the cells' code (pipeline/cell/) and the stage command lines read it.
"""
