"""One adapter per model family: the only code that knows a family's block structure."""
