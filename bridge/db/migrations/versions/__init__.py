"""One file per schema revision, named by date."""
