"""One module per pipeline stage: `main(argv)` parses and loads config, `run(...)` does the work."""
