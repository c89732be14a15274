"""Patient data: the canonical event table, its readers and the shipped datasets."""
