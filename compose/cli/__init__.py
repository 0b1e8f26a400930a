"""The `pycompose` command line: argument parsing, dispatch, and the one place errors become exit codes."""
