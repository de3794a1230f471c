"""One cell: its settings resolved, its model built and trained, its measurements, its checkpoints and outputs.

Everything that decides a cell's outputs lives here (with the study's schema and the data it reads),
and nothing that only records them: the stage hands a cell its tracker. The cells' code digest
(stage train-code, pipeline/study/code.py) covers this package and what it imports.
"""
