#!/usr/bin/env python3
"""Generate the man pages from the Markdown docs, so the two cannot drift.

    python3 scripts/gen-man.py --out DIR        write DIR/cifs-upcall.8 ... (debian/rules)
    python3 scripts/gen-man.py --check          render every page, write nothing

Sources are docs/man/<name>.<section>.md. Two directives pull in text kept elsewhere:

    <!-- options: upcall.cli:_parser -->       the OPTIONS of that argparse parser (the same
                                               text as --help), so a new flag reaches the page
    <!-- include: docs/impersonation.md#Policy file -->
                                               that section of another doc (with its
                                               subsections), e.g. the policy schema

The Markdown subset: headings, paragraphs, '*'/'-' bullets, fenced code, pipe tables, and
inline `code`, **bold**, *italic*, [text](link). Output is plain man(7) roff.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "docs" / "man"
DATE = "2026-12-01"
SOURCE_NAME = "cifs-upcall"


def version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else "unknown"


# --- directives ---------------------------------------------------------------------------
def include_section(spec: str) -> str:
    """'docs/x.md#Title': that heading's section, down to the next heading of its level."""
    path, _, title = spec.partition("#")
    lines = (REPO / path).read_text().splitlines()
    start = level = None
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s+(.*)$", line)
        if not m:
            continue
        if start is None and m.group(2).strip() == title:
            start, level = i, len(m.group(1))
        elif start is not None and level is not None and len(m.group(1)) <= level:
            return "\n".join(lines[start + 1 : i])
    if start is None:
        raise SystemExit(f"gen-man: no section '{title}' in {path}")
    return "\n".join(lines[start + 1 :])


def options_text(spec: str) -> str:
    """The optional arguments of an argparse parser, as a Markdown table of flag | help."""
    module, _, attr = spec.partition(":")
    sys.path.insert(0, str(REPO))
    parser = getattr(importlib.import_module(module), attr)()
    rows = ["| option | meaning |", "|---|---|"]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                rows.append(f"| `{choice.dest}` | {md_escape(choice.help or '')} |")
            continue
        if action.option_strings:
            flags = ", ".join(action.option_strings)
            if action.nargs != 0 and action.metavar:
                flags += f" {action.metavar}"
            elif action.nargs != 0:
                flags += f" {action.dest.upper()}"
        else:
            flags = action.metavar or action.dest.upper()
        text = (action.help or "").replace("%%", "%")
        if "%(default)" in text:
            text = text.replace("%(default)s", str(action.default))
        rows.append(f"| `{flags}` | {md_escape(text)} |")
    return "\n".join(rows)


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def expand(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2).strip()
        return include_section(arg) if kind == "include" else options_text(arg)

    return re.sub(r"<!--\s*(include|options):\s*(.*?)\s*-->", repl, text)


# --- Markdown -> roff -----------------------------------------------------------------------
def esc(text: str) -> str:
    """Escape for roff text (not at line start; see line())."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def inline(text: str) -> str:
    out = []
    pos = 0
    pattern = re.compile(
        r"`([^`]+)`"  # code
        r"|\*\*(.+?)\*\*"  # bold
        r"|(?<![\w*])\*([^*\s][^*]*?)\*(?!\w)"  # italic
        r"|\[([^\]]+)\]\(([^)]+)\)"  # link
    )
    for m in pattern.finditer(text):
        out.append(esc(text[pos : m.start()]))
        if m.group(1) is not None:
            out.append(f"\\fB{esc(m.group(1))}\\fR")
        elif m.group(2) is not None:
            out.append(f"\\fB{inline(m.group(2))}\\fR")
        elif m.group(3) is not None:
            out.append(f"\\fI{inline(m.group(3))}\\fR")
        else:
            label, target = m.group(4), m.group(5)
            out.append(inline(label))
            if target.startswith("http"):
                out.append(f" <{esc(target)}>")
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out).replace("\\|", "|")


def line(text: str) -> str:
    """A roff text line: a leading '.' or "'" would be read as a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def split_row(row: str) -> list[str]:
    row = row.strip().strip("|")
    cells = re.split(r"(?<!\\)\|", row)
    return [c.strip().replace("\\|", "|") for c in cells]


def render(md: str, name: str, section: str, title: str) -> str:
    out = [
        f'.TH {name.upper()} {section} "{DATE}" "{SOURCE_NAME} {version()}" "{title}"',
    ]
    lines = md.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(".PP")
            out.append(line(inline(" ".join(p.strip() for p in para))))
            para.clear()

    while i < len(lines):
        raw = lines[i]
        s = raw.strip()
        if s.startswith("```"):
            flush()
            out += [".PP", ".RS 2", ".nf"]
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                out.append(line(esc(lines[i])))
                i += 1
            out += [".fi", ".RE"]
        elif m := re.match(r"^(#+)\s+(.*)$", s):
            flush()
            text = m.group(2).strip()
            if len(m.group(1)) <= 2:
                out.append(f".SH {inline(text.upper())}")
            else:
                out.append(f".SS {inline(text)}")
        elif s.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = split_row(lines[i])
                if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            header, body = rows[0], rows[1:]
            for cells in body:
                out.append(".TP")
                out.append(line(inline(cells[0])))
                rest = [
                    (f"{header[k]}: " if len(cells) > 2 and k < len(header) else "") + c
                    for k, c in enumerate(cells[1:], start=1)
                    if c and c != "—"
                ]
                out.append(line(inline("; ".join(rest)) if rest else "\\(em"))
            continue
        elif re.match(r"^[*-]\s+", s):
            flush()
            item = [re.sub(r"^[*-]\s+", "", s)]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                item.append(lines[i].strip())
                i += 1
            out += [".IP \\(bu 2", line(inline(" ".join(item)))]
            continue
        elif not s:
            flush()
        else:
            para.append(s)
        i += 1
    flush()
    return "\n".join(out) + "\n"


def pages() -> list[tuple[str, str, str]]:
    """(name, section, roff) for every source."""
    result = []
    for src in sorted(SOURCES.glob("*.md")):
        name, _, section = src.stem.rpartition(".")
        text = expand(src.read_text())
        m = re.match(r"^<!--\s*title:\s*(.*?)\s*-->\n", text)
        title = m.group(1) if m else "System Administration"
        if m:
            text = text[m.end() :]
        result.append((name, section, render(text, name, section, title)))
    if not result:
        raise SystemExit(f"gen-man: no sources in {SOURCES}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", type=Path, help="write the pages into this directory")
    g.add_argument("--check", action="store_true", help="render every page, write nothing")
    args = ap.parse_args()
    for name, section, roff in pages():
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.{section}").write_text(roff)
            print(f"gen-man: {args.out / f'{name}.{section}'}")
        else:
            print(f"gen-man: {name}({section}) {len(roff.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
