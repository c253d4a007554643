"""Matchers: compare an item's signals with the loaded hash lists."""
