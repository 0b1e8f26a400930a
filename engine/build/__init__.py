"""The image builder: Dockerfile parsing, word expansion, and (issue 6) the build steps and their cache.

- `dockerfile`  — text -> instructions with line numbers (directives, continuations, heredocs, flags).
- `shellwords`  — BuildKit's variable expansion, quoting and word splitting.
"""
