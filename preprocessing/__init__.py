"""preprocessing stage of oddbench."""
