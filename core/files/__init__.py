"""What ctxseg writes and reads: atomic writes, weights, checkpoints and pictures."""
