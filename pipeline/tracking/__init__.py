"""Tracking in MLflow: where runs go, the study's parent run and the cells' runs, the spool that survives a
vanished server, and the command that delivers what it kept."""
