"""The image builder: Dockerfile parsing, word expansion, the build context and COPY/ADD; (issue 6) the
build steps and their cache.

- `dockerfile`  — text -> instructions with line numbers (directives, continuations, heredocs, flags).
- `shellwords`  — BuildKit's variable expansion, quoting and word splitting.
- `context`     — the build context: `.dockerignore` rules, source lookup inside it, content digests.
- `copy`        — COPY/ADD file semantics into a root filesystem (globs, dir contents, --chown/--chmod,
                  ADD's archive extraction and URL download) and the cache key of a copy.
"""
