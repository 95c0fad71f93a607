"""Click groups whose extra commands are imported only when they are used.

The crawler and the site register commands (``crawl``, ``serve``) under an entry-point group,
so the core lists and runs them without importing Scrapy or Flask itself. ``lookalike bench``
and its subcommands, and the moderation commands, are named in the code (``module:attribute``),
so the benchmarks and SciPy, and the banks, are never imported by the other commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click


class PluginGroup(click.Group):
    """A click group that also offers the commands registered under ``plugin_group``.

    ``lazy_commands`` maps more command names to ``module:attribute``; a command whose module
    needs a package that is not installed fails with ``missing_hint`` in one line.
    """

    def __init__(
        self,
        *args: Any,
        plugin_group: str | None = None,
        lazy_commands: Mapping[str, str] | None = None,
        missing_hint: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.plugin_group = plugin_group
        self.lazy_commands = dict(lazy_commands or {})
        self.missing_hint = missing_hint

    def _plugins(self) -> dict[str, EntryPoint]:
        registered = entry_points(group=self.plugin_group) if self.plugin_group else ()
        named = (EntryPoint(name, target, "") for name, target in self.lazy_commands.items())
        return {ep.name: ep for ep in [*registered, *named]}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List each command with its whole first sentence, wrapped rather than cut with '…'."""
        helps = [(name, self._short_help(ctx, name)) for name in self.list_commands(ctx)]
        rows = [(name, text) for name, text in helps if text is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str) -> str | None:
        """A command's first sentence, why it cannot run, or None for a hidden one."""
        try:
            command = self.get_command(ctx, name)
        except click.ClickException as unavailable:
            return f"(unavailable: {unavailable.message})"
        return None if command is None or command.hidden else command.get_short_help_str(1_000)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command  # a built-in command: no need to read every package's entry points
        plugin = self._plugins().get(cmd_name)
        if plugin is not None:
            try:
                command = plugin.load()
            except ModuleNotFoundError as error:
                raise click.ClickException(
                    f"{cmd_name} needs {error.name!r}, which is not installed{self.missing_hint}"
                ) from None
        return command
