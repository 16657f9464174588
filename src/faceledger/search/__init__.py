"""Search over a face database: identify (1:N), verify (1:1), find similar, group."""
