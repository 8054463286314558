"""Data files shipped with the filters (the quality classifier's labelled set, word lists)."""
