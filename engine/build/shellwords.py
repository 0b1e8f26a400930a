"""Dockerfile word processing: variable expansion, quotes and escapes, as BuildKit's shell lexer does it.

The builder expands `$VAR` itself in FROM, COPY, ADD, ENV, ARG, LABEL, EXPOSE, USER, WORKDIR, VOLUME and
STOPSIGNAL (RUN, CMD and ENTRYPOINT are left to the container's shell). Rules kept from BuildKit:
- single quotes are literal; double quotes allow `$` expansion and escape only `"`, `$`, the escape
  character and a newline; outside quotes the escape character makes the next character literal;
- `$name`, `${name}`, `${name:-word}` / `${name-word}` (default when unset/empty, or only unset),
  `${name:+word}` / `${name+word}` (alternative), `${name:?message}` / `${name?message}` (required),
  where `word` is itself expanded; an unknown variable is the empty string; a `$` not followed by a
  name stays a `$`;
- when splitting into words, unquoted whitespace separates words, including whitespace that comes from
  an unquoted expansion; quoted text never splits.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import EngineError


class ExpansionError(EngineError):
    """A `${...}` that cannot be expanded (unterminated, bad modifier, or `:?` on an unset variable)."""


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """`text` with variables expanded and quotes and escapes removed, as one word."""
    return _Lexer(text, env, escape).run()[0]


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """A here-document body with an unquoted delimiter: `$` expansions done, quotes kept (as a shell's
    here-doc), the escape character protecting only `$`, itself and a newline."""
    lexer = _Lexer(text, env, escape)
    out: list[str] = []
    while lexer.pos < len(text):
        ch = lexer.take()
        if ch == escape and lexer.peek() in ("$", escape, "\n"):
            follower = lexer.take()
            out.append("" if follower == "\n" else follower)
        elif ch == "$":
            out.append(lexer._dollar())
        else:
            out.append(ch)
    return "".join(out)


def split(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """`text` expanded and split into words (COPY sources, EXPOSE ports, VOLUME paths...)."""
    return _Lexer(text, env, escape).run()[1]


class _Words:
    """Collects words; `split` chars (from unquoted text and expansions) end the current word."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current: list[str] = []
        self.in_word = False

    def add(self, text: str, *, splittable: bool) -> None:
        for ch in text:
            if splittable and ch.isspace():
                self._end()
            else:
                self.current.append(ch)
                self.in_word = True

    def mark_word(self) -> None:
        """A quoted empty string ("") still makes a word."""
        self.in_word = True

    def _end(self) -> None:
        if self.in_word:
            self.words.append("".join(self.current))
            self.current, self.in_word = [], False

    def finish(self) -> list[str]:
        self._end()
        return self.words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def run(self) -> tuple[str, list[str]]:
        result, words = self._until("")
        return result, words.finish()

    def _until(self, stop: str) -> tuple[str, _Words]:
        """Process up to `stop` (unquoted; "" = end of text); returns the joined text and the words."""
        out: list[str] = []
        words = _Words()
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.take()
                return "".join(out), words
            if ch == "'":
                self.take()
                piece = self._single_quoted()
                words.mark_word()
                words.add(piece, splittable=False)
            elif ch == '"':
                self.take()
                piece = self._double_quoted()
                words.mark_word()
                words.add(piece, splittable=False)
            elif ch == "$":
                self.take()
                piece = self._dollar()
                words.add(piece, splittable=True)
            elif ch == self.escape:
                self.take()
                piece = self.take()  # a trailing escape is dropped
                words.add(piece, splittable=False)
            else:
                piece = self.take()
                words.add(piece, splittable=True)
            out.append(piece)
        if stop:
            raise ExpansionError(f"missing '{stop}'", subject=self.text)
        return "".join(out), words

    def _single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise ExpansionError("unexpected end of text: missing closing '", subject=self.text)
        piece = self.text[self.pos : end]
        self.pos = end + 1
        return piece

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self.take()
            if ch == "":
                raise ExpansionError('unexpected end of text: missing closing "', subject=self.text)
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape, "\n"):
                out.append(self.take())
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)

    def _dollar(self) -> str:
        """After a `$`: a name, a `{...}` form, or a literal `$`."""
        if self.peek() == "{":
            self.take()
            return self._braced()
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _name(self) -> str:
        start = self.pos
        if self.peek().isdigit():  # positional ($1) and special names expand to nothing, like BuildKit
            self.take()
            return self.text[start : self.pos]
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.take()
        return self.text[start : self.pos]

    def _braced(self) -> str:
        name = self._name()
        if not name:
            raise ExpansionError("bad substitution: missing variable name in ${}", subject=self.text)
        ch = self.take()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.take()
        if ch not in ("-", "+", "?"):
            raise ExpansionError(f"unsupported modifier ({ch or 'end'}) in ${{{name}}}", subject=self.text)
        word, _ = self._until("}")
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set else word  # type: ignore[return-value]
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise ExpansionError(word or "is not allowed to be unset", subject=name)
        return value  # type: ignore[return-value]
