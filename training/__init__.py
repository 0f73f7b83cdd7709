"""training stage of oddbench."""
