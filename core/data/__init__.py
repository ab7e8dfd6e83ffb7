"""Dataset formats and the embedded procedural dataset."""
