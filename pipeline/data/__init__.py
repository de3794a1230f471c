"""Dataset sources, download and verification, file-format parsers and the prepared arrays."""
