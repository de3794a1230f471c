"""Dataset descriptors, download and verification, file-format parsers and the prepared arrays."""
