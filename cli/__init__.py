"""The `deepntk` command line: parses, calls the engine, prints or writes results."""
