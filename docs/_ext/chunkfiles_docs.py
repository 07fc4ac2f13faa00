"""Sphinx directives that generate reference pages from the code, so they never drift.

- ``.. chunkfiles-settings::`` renders every key of ``chunkfiles.conf.SETTINGS``
  as a ``confval`` (name, default, meaning).
- ``.. chunkfiles-commands::`` finds every installed management command whose
  name starts with ``chunkfiles_`` and renders its help, usage and options from
  the parser Django builds for it, so a command added later appears without
  editing the docs. (argparse has no public API for its actions, hence the
  ``_actions``/formatter calls.)
- ``.. chunkfiles-readme:: Title`` includes a top-level section of README.rst,
  where the measured benchmark tables live once.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand
from django.db.models import Model
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from chunkfiles.conf import SETTINGS

COMMAND_PREFIX = "chunkfiles_"

# Characters that start inline markup; help texts are plain text, so escape them.
_RST_SPECIAL = re.compile(r"([\\`*_|<>\[\]])")


def rst_escape(text: str) -> str:
    """``text`` as literal reStructuredText (no accidental emphasis or references)."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def format_default(name: str, value: Any) -> str:
    """A setting's default as inline code, with sizes and durations spelt out."""
    shown = f"``{value!r}``"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024:
        if name.endswith("SIZE") and value % (1024 * 1024) == 0:
            shown += f" ({value // (1024 * 1024)} MiB)"
        elif name.endswith("GRACE") and value % 3600 == 0:
            hours = value // 3600
            shown += f" ({hours // 24} day{'s' if hours != 24 else ''})" if hours % 24 == 0 else ""
    return shown


def settings_rst() -> list[str]:
    """reStructuredText for every key of ``SETTINGS``, in their order."""
    lines: list[str] = []
    for setting in SETTINGS:
        lines += [
            f".. confval:: {setting.name}",
            f"   :default: {format_default(setting.name, setting.default)}",
            "",
            *textwrap.indent(setting.doc, "   ").splitlines(),
            "",
        ]
    return lines


def chunkfiles_commands() -> list[tuple[str, BaseCommand]]:
    """Every installed ``chunkfiles_*`` command, by name."""
    return [
        (name, load_command_class(app, name))
        for name, app in sorted(get_commands().items())
        if name.startswith(COMMAND_PREFIX)
    ]


def _option_signature(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    """``--id ID, -i ID`` or ``path`` as the ``option`` directive expects it."""
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{opt} {metavar}" for opt in action.option_strings)


def command_rst(name: str, command: BaseCommand) -> list[str]:
    """A section for one command: help, usage and its own options."""
    parser = command.create_parser("manage.py", name)
    common = {
        tuple(a.option_strings) for a in BaseCommand().create_parser("manage.py", name)._actions
    }
    formatter = parser._get_formatter()
    lines = [name, "~" * len(name), ""]
    help_text = textwrap.dedent(str(command.help or "")).strip()
    if help_text:
        lines += [rst_escape(help_text), ""]
    # argparse aligns continuation lines under the text after "usage: "; drop both.
    prefix = "usage: "
    usage = [
        line[len(prefix) :] if line.startswith((prefix, " " * len(prefix))) else line
        for line in parser.format_usage().strip().splitlines()
    ]
    lines += [".. code-block:: text", "", *(f"   {line}" for line in usage), ""]
    lines += [f".. program:: {name}", ""]
    own = [a for a in parser._actions if tuple(a.option_strings) not in common]
    for action in own:
        if action.help == argparse.SUPPRESS:
            continue
        lines += [f".. option:: {_option_signature(action, formatter)}", ""]
        expanded = formatter._expand_help(action) if action.help else ""
        if expanded:
            lines += [f"   {rst_escape(' '.join(expanded.split()))}", ""]
    lines += [
        "Also takes Django's common options (``--help``, ``--verbosity``, ``--settings``, "
        "``--pythonpath``, ``--traceback``, ``--no-color``, ``--force-color``, "
        "``--skip-checks``).",
        "",
    ]
    return lines


def readme_section(readme: list[str], title: str) -> list[str] | None:
    """The body of the top-level section ``title`` of README.rst (``====`` underlines)."""

    def is_title(i: int) -> bool:
        line, under = readme[i], readme[i + 1] if i + 1 < len(readme) else ""
        return bool(line.strip()) and len(under) >= len(line) and set(under) == {"="}

    starts = [i for i in range(len(readme)) if is_title(i) and readme[i].strip() == title]
    if not starts:
        return None
    body_start = starts[0] + 2
    end = next((i for i in range(body_start, len(readme)) if is_title(i)), len(readme))
    return readme[body_start:end]


def _is_subtitle(lines: list[str], i: int) -> bool:
    line, under = lines[i], lines[i + 1]
    return bool(line.strip()) and len(under) >= len(line) and set(under) == {"-"}


class SettingsDirective(SphinxDirective):
    """``.. chunkfiles-settings::``: the settings reference from ``conf.SETTINGS``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        return self.parse_lines(settings_rst())

    def parse_lines(self, lines: list[str]) -> list[nodes.Node]:
        """Parse generated reStructuredText (sections allowed) in place of the directive."""
        _generated_pages(self.env).add(self.env.docname)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=__file__), container)
        return list(container.children)


class CommandsDirective(SettingsDirective):
    """``.. chunkfiles-commands::``: one section per installed ``chunkfiles_*`` command."""

    def run(self) -> list[nodes.Node]:
        commands = chunkfiles_commands()
        if not commands:
            return [nodes.paragraph(text="No chunkfiles management command is installed.")]
        lines: list[str] = []
        for name, command in commands:
            lines += command_rst(name, command)
        return self.parse_lines(lines)


class ReadmeSectionDirective(SettingsDirective):
    """``.. chunkfiles-readme:: Title``: a section of README.rst, so both show one text."""

    required_arguments = 1
    final_argument_whitespace = True
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {"no-intro": directives.flag}

    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir).parent / "README.rst"
        self.env.note_dependency(str(path))
        body = readme_section(path.read_text(encoding="utf-8").splitlines(), self.arguments[0])
        if body is None:
            raise self.error(f"README.rst has no section titled {self.arguments[0]!r}")
        if "no-intro" in self.options:
            # Start at the first sub-section: the page has its own introduction.
            body = body[next((i for i in range(len(body) - 1) if _is_subtitle(body, i)), 0) :]
        # README's image paths are relative to the repository root; in Sphinx a
        # leading "/" means the docs' source directory.
        body = [re.sub(r"^(\.\. (?:image|figure):: )docs/", r"\1/", line) for line in body]
        # README's sub-sections (``----``) become this page's sub-sections.
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(body, source=str(path)), container)
        return list(container.children)


def model_fields_rst(model: type[Model]) -> list[str]:
    """A field list of a model's own columns: name, type and ``help_text``."""
    lines = ["", "**Fields**", ""]
    for field in model._meta.get_fields(include_hidden=False):
        if not getattr(field, "concrete", False) or field.model is not model:
            continue
        kind = type(field).__name__
        help_text = str(getattr(field, "help_text", "") or "")
        lines.append(f"- ``{field.name}`` ({kind}): {rst_escape(help_text)}".rstrip(": "))
    return [*lines, ""]


def _add_model_fields(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    # Fields have no docstrings; their help_text is the documentation.
    if what == "class" and isinstance(obj, type) and issubclass(obj, Model):
        lines.extend(model_fields_rst(obj))


def _generated_pages(env: BuildEnvironment) -> set[str]:
    pages: set[str] = env.domaindata.setdefault("chunkfiles_docs", {}).setdefault("pages", set())
    return pages


def _reread_generated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    # Their content comes from code, not from the .rst file Sphinx watches.
    return sorted(_generated_pages(env) - removed)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives and re-read their pages on every build."""
    app.add_directive("chunkfiles-settings", SettingsDirective)
    app.add_directive("chunkfiles-commands", CommandsDirective)
    app.add_directive("chunkfiles-readme", ReadmeSectionDirective)
    app.connect("env-get-outdated", _reread_generated)
    app.connect("autodoc-process-docstring", _add_model_fields)
    return {"version": "1", "parallel_read_safe": False, "env_version": 1}
